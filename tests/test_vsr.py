"""The VSR network: exact parameter counts, shapes, padding, gradients, sequence vs cell equivalence."""

import pytest
import torch

from vqdsr_core.models import build_model
from vqdsr_core.models.vsr import RecurrentVSRNet, count_parameters, pad_to_modulus


def test_parameter_counts_match_the_papers():
    assert count_parameters(RecurrentVSRNet()) == 1_467_728  # VQD-SR
    assert count_parameters(RecurrentVSRNet(feedback=True)) == 1_495_376  # AnimeSR
    assert count_parameters(build_model("vqdsr_vsr")) == 1_467_728
    assert count_parameters(build_model("animesr_vsr")) == 1_495_376


def test_cell_input_channels():
    assert RecurrentVSRNet().trunk.conv_s1_first.in_channels == 73
    assert RecurrentVSRNet(feedback=True).trunk.conv_s1_first.in_channels == 121


@pytest.mark.parametrize("feedback", [False, True])
@pytest.mark.parametrize("hw", [(16, 20), (18, 22), (17, 13)])
def test_sequence_output_shape_any_size(feedback, hw):
    torch.manual_seed(0)
    net = RecurrentVSRNet(feedback=feedback)
    h, w = hw
    out = net(torch.rand(2, 3, 3, h, w))
    assert out.shape == (2, 3, 3, 4 * h, 4 * w)
    assert torch.isfinite(out).all()


def test_sequence_forward_equals_cell_loop_with_replicated_edges():
    torch.manual_seed(0)
    net = RecurrentVSRNet().eval()
    clip = torch.rand(1, 4, 3, 16, 16)
    with torch.no_grad():
        seq = net(clip)
        state, _ = net.init_state(clip[:, 0])
        n = clip.shape[1]
        for t in range(n):
            sr, state = net.cell(clip[:, max(t - 1, 0)], clip[:, t], clip[:, min(t + 1, n - 1)], state)
            torch.testing.assert_close(sr, seq[:, t])


def test_state_carries_information_across_time():
    torch.manual_seed(0)
    net = RecurrentVSRNet().eval()
    a = torch.rand(1, 5, 3, 16, 16)
    b = a.clone()
    b[:, 0] = torch.rand(3, 16, 16)  # only frame 0 differs
    with torch.no_grad():
        # frame 3 never sees frame 0 through its window (t-1..t+1): any difference came through the state
        assert not torch.allclose(net(a)[:, 3], net(b)[:, 3])


def test_residual_to_bilinear_upscale():
    net = RecurrentVSRNet().eval()
    for p in net.trunk.fusion[-1].parameters():
        torch.nn.init.zeros_(p)  # trunk output zero -> SR is exactly bilinear x4 of frame t
    clip = torch.rand(1, 2, 3, 8, 12)
    with torch.no_grad():
        out = net(clip)
    ref = torch.nn.functional.interpolate(clip[:, 1], scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[:, 1], ref)


@pytest.mark.parametrize("feedback", [False, True])
def test_gradients_reach_every_parameter(feedback):
    torch.manual_seed(0)
    net = RecurrentVSRNet(feedback=feedback)
    net(torch.rand(1, 3, 3, 16, 16)).mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_pad_to_modulus_replicates_bottom_right():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    y, pad = pad_to_modulus(x, 4)
    assert pad == (2, 1) and y.shape == (1, 1, 4, 4)
    assert torch.equal(y[..., :2, :3], x)
    assert torch.equal(y[..., 3, :3], x[..., 1, :])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="expected 3 channels"):
        RecurrentVSRNet()(torch.rand(1, 2, 4, 8, 8))
    with pytest.raises(ValueError, match="prev_sr"):
        net = RecurrentVSRNet(feedback=True)
        x = torch.rand(1, 3, 8, 8)
        net.cell(x, x, x, net.init_state(x)[0], None)
    with pytest.raises(ValueError, match="num_block"):
        RecurrentVSRNet(num_block=(2, 3, 2))
