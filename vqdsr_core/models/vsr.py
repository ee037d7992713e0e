"""The VSR network: AnimeSR's unidirectional recurrent net, with or without SR feedback.

VQD-SR (Tuo et al., ICCV 2023) uses AnimeSR's ``MSRSWVSR`` without the fed-back SR frame: each step sees the
LR window (t-1, t, t+1) and a 64-channel hidden state, and emits the x4 SR frame plus the next state.
Parameters: 1,467,728 without feedback (VQD-SR), 1,495,376 with feedback (AnimeSR).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SCALE = 4
MODULUS = 4  # two stride-2 convolutions: LR height and width must be multiples of 4


class ResidualBlockNoBN(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, plus identity (BasicSR); Kaiming init scaled by 0.1."""

    def __init__(self, ch: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x), inplace=True))


def _up(x: Tensor, factor: int) -> Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class RightAlignedMultiScaleTrunk(nn.Module):
    """Residual trunk at 1, 1/2 and 1/4 LR scale; the coarse bodies are right-aligned with the fine one.

    With blocks (5, 3, 2), step i runs s1 block i, then s2 block i-2 (i >= 2), then s4 block i-3 (i >= 3);
    each block input adds the upsampled coarser scales once they have run their first block.
    """

    def __init__(self, in_ch: int, out_ch: int, num_feat: int = 64, num_block: tuple[int, int, int] = (5, 3, 2)):
        super().__init__()
        n1, n2, n4 = num_block
        if not n1 >= n2 >= n4 >= 1:
            raise ValueError(f"RightAlignedMultiScaleTrunk: num_block must be non-increasing and >= 1, got {num_block}")
        self.num_block = (n1, n2, n4)
        self.conv_s1_first = nn.Conv2d(in_ch, num_feat, 3, 1, 1)
        self.conv_s2_first = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_s4_first = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.body_s1 = nn.ModuleList(ResidualBlockNoBN(num_feat) for _ in range(n1))
        self.body_s2 = nn.ModuleList(ResidualBlockNoBN(num_feat) for _ in range(n2))
        self.body_s4 = nn.ModuleList(ResidualBlockNoBN(num_feat) for _ in range(n4))
        self.fusion = nn.Sequential(
            nn.Conv2d(3 * num_feat, 224, 3, 1, 1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(224, out_ch, 3, 1, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        n1, n2, n4 = self.num_block
        s1 = F.leaky_relu(self.conv_s1_first(x), 0.1)  # (B, 64, h, w)
        s2 = F.leaky_relu(self.conv_s2_first(s1), 0.1)  # (B, 64, h/2, w/2)
        s4 = F.leaky_relu(self.conv_s4_first(s2), 0.1)  # (B, 64, h/4, w/4)
        s2_on = s4_on = False
        for i in range(n1):
            feed = s1
            if s2_on:
                feed = feed + _up(s2, 2)
            if s4_on:
                feed = feed + _up(s4, 4)
            s1 = self.body_s1[i](feed)
            j = i - (n1 - n2)
            if j >= 0:
                s2 = self.body_s2[j](s2 + _up(s4, 2) if s4_on else s2)
                s2_on = True
            j = i - (n1 - n4)
            if j >= 0:
                s4 = self.body_s4[j](s4)
                s4_on = True
        return self.fusion(torch.cat([s1, _up(s2, 2), _up(s4, 4)], dim=1))  # (B, out_ch, h, w)


class RecurrentVSRNet(nn.Module):
    """Unidirectional recurrent x4 VSR net (VQD-SR: ``feedback=False``; AnimeSR: ``feedback=True``).

    Cell input: LR[t-1], LR[t], LR[t+1] (9 ch) + state (64 ch) [+ pixel-unshuffled SR[t-1] (48 ch)].
    Cell output: SR[t] = PixelShuffle(4)(trunk[:48]) + bilinear x4 of LR[t]; state = LReLU(trunk[48:112]).

    ``prime_steps`` (not in the references; 0 = their zero start): after a reset the cell first runs that many
    times on the first window, outputs discarded, so the first frame is made from a state that has seen it
    instead of from zeros. A zero state makes the first frames of every clip and scene differ from the steady
    state (still-shot flicker that decays over about three frames); priming costs ``prime_steps`` cells per reset.

    ``single_frame`` (not in the references): every frame is made alone, from a zero state on the window
    (LR[t], LR[t], LR[t]), in training and inference alike; the same weights, at the same cost per frame. At CPU
    scale the neighbours and the state gained nothing on held-out art and made held drawings shimmer
    (bench/QUALITY.md, session 10), so a weight file can ask to be run this way.
    """

    def __init__(
        self,
        num_feat: int = 64,
        num_block: tuple[int, int, int] = (5, 3, 2),
        feedback: bool = False,
        prime_steps: int = 0,
        single_frame: bool = False,
    ):
        super().__init__()
        if not 0 <= int(prime_steps) <= 8:
            raise ValueError(f"RecurrentVSRNet: prime_steps must be in 0..8, got {prime_steps}")
        self.num_feat = num_feat
        self.feedback = feedback
        self.prime_steps = int(prime_steps)
        if not isinstance(single_frame, bool):
            raise ValueError(f"RecurrentVSRNet: single_frame must be True or False, got {single_frame!r}")
        self.single_frame = single_frame
        in_ch = 9 + num_feat + (3 * SCALE * SCALE if feedback else 0)
        self.trunk = RightAlignedMultiScaleTrunk(in_ch, 3 * SCALE * SCALE + num_feat, num_feat, tuple(num_block))

    def init_state(self, lr: Tensor) -> tuple[Tensor, Tensor | None]:
        """Zero state (and zero previous SR with feedback) for an LR frame batch (B, 3, h, w)."""
        b, _, h, w = lr.shape
        state = lr.new_zeros(b, self.num_feat, h, w)
        prev_sr = lr.new_zeros(b, 3, h * SCALE, w * SCALE) if self.feedback else None
        return state, prev_sr

    def cell(
        self, lr_prev: Tensor, lr: Tensor, lr_next: Tensor, state: Tensor, prev_sr: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """One recurrent step on (B, 3, h, w) frames with h, w multiples of 4 -> (SR (B,3,4h,4w), state)."""
        parts = [lr_prev, lr, lr_next]
        if self.feedback:
            if prev_sr is None:
                raise ValueError("RecurrentVSRNet.cell: the feedback variant needs prev_sr")
            parts.append(F.pixel_unshuffle(prev_sr, SCALE))  # (B, 48, h, w)
        parts.append(state)
        out = self.trunk(torch.cat(parts, dim=1))  # (B, 112, h, w)
        sr = F.pixel_shuffle(out[:, : 3 * SCALE * SCALE], SCALE)  # (B, 3, 4h, 4w)
        sr = sr + F.interpolate(lr, scale_factor=SCALE, mode="bilinear", align_corners=False)
        return sr, F.leaky_relu(out[:, 3 * SCALE * SCALE :], 0.1)

    def forward(self, clip: Tensor) -> Tensor:
        """Sequence forward with full BPTT: (B, N, 3, h, w) -> (B, N, 3, 4h, 4w); edge frames replicated."""
        b, n, c, h, w = clip.shape
        if c != 3:
            raise ValueError(f"RecurrentVSRNet.forward: expected 3 channels, got shape {tuple(clip.shape)}")
        clip, _ = pad_to_modulus(clip.flatten(0, 1), MODULUS)
        clip = clip.unflatten(0, (b, n))
        if self.single_frame:  # (B*N, 3, h, w) frames, each from a zero state on (LR_t, LR_t, LR_t)
            frames = clip.flatten(0, 1)
            state, prev_sr = self.init_state(frames)
            sr, _ = self.cell(frames, frames, frames, state, prev_sr)
            return sr.unflatten(0, (b, n))[..., : h * SCALE, : w * SCALE]
        state, prev_sr = self.init_state(clip[:, 0])
        first = (clip[:, 0], clip[:, 0], clip[:, min(1, n - 1)])  # the first step's window
        for _ in range(self.prime_steps):
            sr, state = self.cell(*first, state, prev_sr)
            prev_sr = sr if self.feedback else None
        outs = []
        for t in range(n):
            sr, state = self.cell(clip[:, max(t - 1, 0)], clip[:, t], clip[:, min(t + 1, n - 1)], state, prev_sr)
            prev_sr = sr if self.feedback else None
            outs.append(sr)
        return torch.stack(outs, dim=1)[..., : h * SCALE, : w * SCALE]


def pad_to_modulus(x: Tensor, modulus: int = MODULUS) -> tuple[Tensor, tuple[int, int]]:
    """Replicate-pad (B, C, H, W) on the bottom/right to multiples of ``modulus``; returns the padding."""
    ph, pw = -x.shape[-2] % modulus, -x.shape[-1] % modulus
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (ph, pw)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
