"""The networks: plain ``torch.nn.Module`` s, small by default (a few hundred thousand parameters,
trainable on two CPU cores in minutes) and widened with ``width`` / ``depth`` for GPU runs.

Every model takes its inputs positionally in the order of its ``ModelSpec.inputs`` and returns a
``dict`` of tensors whose ``"out"`` entry is the primary output (logits for maps, the regressed
value for the stock model); the other entries are auxiliary heads. Nothing here moves tensors
between devices: new tensors are made on the input's device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ASPP", "DifferenceAttention", "DualStreamUNet", "SiamDiffDualTask", "StockRegressor",
           "UNet", "grad_cam"]


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True))


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad H and W up to a multiple of ``multiple`` (so pooling and upsampling line up)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if min(h, w) > max(ph, pw) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class Encoder(nn.Module):
    """U-Net encoder: a conv block, then ``depth`` times (max-pool, conv block, width × 2)."""

    def __init__(self, in_channels: int, width: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.channels = [width * 2**i for i in range(depth + 1)]
        self.inc = _conv_block(in_channels, width)
        self.downs = nn.ModuleList(
            _conv_block(self.channels[i], self.channels[i + 1]) for i in range(depth))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.inc(x)]
        for down in self.downs:
            feats.append(down(F.max_pool2d(feats[-1], 2)))
        return feats


class Decoder(nn.Module):
    """U-Net decoder: bilinear up-sampling, concatenation with the skip, conv block."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.ups = nn.ModuleList(
            _conv_block(channels[i + 1] + channels[i], channels[i])
            for i in reversed(range(len(channels) - 1)))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skip], dim=1))
        return x


class UNet(nn.Module):
    """U-Net for one modality (S2, S1 or VHR RGB).

    Parameters
    ----------
    in_channels
        Number of input bands.
    out_channels
        Number of output maps (1 for a binary map: logits, apply a sigmoid).
    width
        Channels of the first level; each level doubles them.
    depth
        Number of down-sampling steps; inputs are padded to a multiple of ``2**depth``.
    """

    def __init__(self, in_channels: int, out_channels: int = 1, width: int = 16,
                 depth: int = 3) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels, width, depth)
        self.decoder = Decoder(self.encoder.channels)
        self.head = nn.Conv2d(width, out_channels, 1)
        self._in = (in_channels,)

    def input_channels(self) -> tuple[int, ...]:
        return self._in

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last decoder feature map, at the input's size."""
        x, (h, w) = _pad_to(x, 2**self.encoder.depth)
        return self.decoder(self.encoder(x))[..., :h, :w]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.head(self.features(x))}


class DualStreamUNet(nn.Module):
    """Dual-Stream U-Net: a SAR stream and an optical stream fused at decision level.

    Each stream is a U-Net with its own head; the fusion head reads the concatenated last
    feature maps of both streams (Hafner et al. 2022). Outputs ``out`` (fusion), ``sar`` and
    ``optical`` logits.
    """

    def __init__(self, sar_channels: int = 2, optical_channels: int = 6, out_channels: int = 1,
                 width: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.sar = UNet(sar_channels, out_channels, width, depth)
        self.optical = UNet(optical_channels, out_channels, width, depth)
        self.fusion = nn.Conv2d(2 * width, out_channels, 1)
        self._in = (sar_channels, optical_channels)

    def input_channels(self) -> tuple[int, ...]:
        return self._in

    def forward(self, sar: torch.Tensor, optical: torch.Tensor) -> dict[str, torch.Tensor]:
        fs, fo = self.sar.features(sar), self.optical.features(optical)
        return {"out": self.fusion(torch.cat([fs, fo], dim=1)), "sar": self.sar.head(fs),
                "optical": self.optical.head(fo)}


class DifferenceAttention(nn.Module):
    """Difference attention (after HDANet): the change-intensity map, the per-pixel Euclidean
    distance between the two dates' features, goes through a 3×3 conv and a sigmoid and
    weights the absolute feature difference."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        d = f1 - f2
        intensity = torch.sqrt((d * d).sum(dim=1, keepdim=True) + 1e-12)
        return torch.sigmoid(self.conv(intensity)) * d.abs()


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1×1, dilated 3×3 convs and image pooling, fused by 1×1."""

    def __init__(self, channels: int, rates: tuple[int, ...] = (2, 4)) -> None:
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())])
        for r in rates:
            self.branches.append(nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=r, dilation=r, bias=False),
                nn.BatchNorm2d(channels), nn.ReLU()))
        # no BatchNorm after pooling: a 1×1 map with batch size 1 cannot be normalised
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1),
                                  nn.ReLU())
        self.project = nn.Sequential(
            nn.Conv2d(channels * (len(rates) + 2), channels, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


class SiamDiffDualTask(nn.Module):
    """Siam-Diff Dual-Task change detection.

    A shared encoder reads both dates; a change decoder reads the per-level feature
    differences (absolute, or difference attention), with an optional ASPP block on the deepest
    difference; a shared segmentation decoder maps each date. Outputs ``out`` (change logits),
    ``seg_t1`` and ``seg_t2`` (built-up logits per date).
    """

    def __init__(self, in_channels: int, width: int = 16, depth: int = 3,
                 difference_attention: bool = True, aspp: bool = True) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels, width, depth)
        ch = self.encoder.channels
        self.attention = nn.ModuleList(DifferenceAttention() for _ in ch) if (
            difference_attention) else None
        self.aspp = ASPP(ch[-1]) if aspp else None
        self.change_decoder = Decoder(ch)
        self.seg_decoder = Decoder(ch)
        self.change_head = nn.Conv2d(width, 1, 1)
        self.seg_head = nn.Conv2d(width, 1, 1)
        self._in = (in_channels, in_channels)

    def input_channels(self) -> tuple[int, ...]:
        return self._in

    def forward(self, t1: torch.Tensor, t2: torch.Tensor) -> dict[str, torch.Tensor]:
        t1, (h, w) = _pad_to(t1, 2**self.encoder.depth)
        t2, _ = _pad_to(t2, 2**self.encoder.depth)
        f = self.encoder(torch.cat([t1, t2], dim=0))  # one pass over both dates
        n = t1.shape[0]
        f1, f2 = [x[:n] for x in f], [x[n:] for x in f]
        if self.attention is not None:
            diff = [a(x1, x2) for a, x1, x2 in zip(self.attention, f1, f2, strict=True)]
        else:
            diff = [(x1 - x2).abs() for x1, x2 in zip(f1, f2, strict=True)]
        if self.aspp is not None:
            diff[-1] = self.aspp(diff[-1])
        change = self.change_head(self.change_decoder(diff))
        seg = self.seg_head(self.seg_decoder(f))
        crop = (..., slice(0, h), slice(0, w))
        return {"out": change[crop], "seg_t1": seg[:n][crop], "seg_t2": seg[n:][crop]}


class StockRegressor(nn.Module):
    """Building-stock regression from an optical patch and a night-light time series.

    The optical branch is a small CNN over the S2 composite patch of a grid cell (its last
    feature map is what Grad-CAM explains); the NTL branch a 1-D CNN over the cell's monthly
    radiance; their pooled features are concatenated and regressed (Bao et al. 2023).
    ``branches`` selects both (fusion) or one of them (the ORS-only and NTL-only baselines);
    the forward takes the inputs of the branches used, in the order of ``branches``: an optical
    patch (B, C, H, W) and/or a series (B, 1, T).
    """

    def __init__(self, optical_channels: int = 6, ntl_length: int = 24, width: int = 16,
                 branches: tuple[str, ...] | list[str] = ("optical", "ntl")) -> None:
        super().__init__()
        branches = tuple(branches)
        if not branches or set(branches) - {"optical", "ntl"}:
            raise ValueError(f"branches={branches} must be a non-empty subset of "
                             "('optical', 'ntl')")
        self.branches = branches
        self.ntl_length = ntl_length
        n_feat = 0
        if "optical" in branches:
            self.optical = nn.Sequential(
                _conv_block(optical_channels, width), nn.MaxPool2d(2),
                _conv_block(width, 2 * width))
            n_feat += 2 * width
        if "ntl" in branches:
            self.ntl = nn.Sequential(
                nn.Conv1d(1, width, 3, padding=1), nn.ReLU(),
                nn.Conv1d(width, width, 3, padding=1), nn.ReLU())
            self.ntl_fc = nn.Linear(width * 2, 2 * width)
            n_feat += 2 * width
        self.head = nn.Sequential(nn.Linear(n_feat, 2 * width), nn.ReLU(),
                                  nn.Linear(2 * width, 1))
        self._in = tuple(optical_channels if b == "optical" else 1 for b in branches)

    def input_channels(self) -> tuple[int, ...]:
        return self._in

    def optical_features(self, optical: torch.Tensor) -> torch.Tensor:
        return self.optical(optical)

    def regress(self, fmap: torch.Tensor | None, ntl: torch.Tensor | None) -> torch.Tensor:
        feats = []
        if "optical" in self.branches:
            feats.append(fmap.mean(dim=(2, 3)))
        if "ntl" in self.branches:
            s = ntl.reshape(ntl.shape[0], 1, -1)  # (B, 1, T): one band, T months
            h = self.ntl(s)
            # mean and last-month features: the level and where the series ends up
            feats.append(F.relu(self.ntl_fc(torch.cat([h.mean(dim=2), h[..., -1]], dim=1))))
        return self.head(torch.cat(feats, dim=1))[:, 0]

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        if len(inputs) != len(self.branches):
            raise ValueError(f"this StockRegressor uses branches {self.branches}; pass one "
                             f"input per branch in that order, got {len(inputs)}")
        x = dict(zip(self.branches, inputs, strict=True))
        fmap = self.optical_features(x["optical"]) if "optical" in x else None
        return {"out": self.regress(fmap, x.get("ntl"))}


def grad_cam(model: StockRegressor, optical: torch.Tensor, ntl: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Grad-CAM of the optical branch: where in each patch the regressed stock comes from.

    Returns a (B, H, W) map in [0, 1] at the patch's size: the ReLU of the optical branch's
    last feature map weighted by the spatially averaged gradient of the output, up-sampled and
    scaled to a maximum of 1 per patch.
    """
    if "optical" not in model.branches:
        raise ValueError("Grad-CAM explains the optical branch; this model has none")
    with torch.enable_grad():
        fmap = model.optical_features(optical)
        y = model.regress(fmap, ntl)
        (grad,) = torch.autograd.grad(y.sum(), fmap)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * fmap).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=optical.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)
    return (cam / peak[:, None, None]).detach()
