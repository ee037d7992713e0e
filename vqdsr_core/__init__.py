"""vqdsr_core: VQD-SR models, degradations, data and training in pure PyTorch."""
