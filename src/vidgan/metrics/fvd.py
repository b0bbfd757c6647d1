"""The Kinetics-400 I3D network that FVD is defined with (Carreira & Zisserman 2017; Unterthiner et al. 2018).

FVD = the Frechet distance (frechet.py) between I3D features of real and generated clips. The
features are the 400 pre-softmax Kinetics logits, averaged over time, as in the TF-Hub model
that the original FVD code uses and in StyleGAN-V's TorchScript port of it (`i3d_torchscript.pt`).

The weights cannot be installed from a package registry. A user with internet gets them from
    https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1   (StyleGAN-V's file, TorchScript)
and passes the file with `--i3d-weights PATH` (extractors.py loads it). We found no published
SHA-256 for that file; vidgan records the SHA-256 of whatever file it loads next to every score,
so two numbers are comparable exactly when that hash (and the protocol) match.

`InceptionI3d` below is the same architecture written out (TF 'SAME' padding, BatchNorm eps 1e-3,
logits = 1x1x1 conv after a (2, 7, 7) average pool, then the mean over time). Its forward takes
the same flags as the StyleGAN-V file, so either can be called the same way:
    rescale: input in [0, 255] -> x / 255 * 2 - 1 (the network expects [-1, 1])
    resize:  trilinear resize of every frame to 224x224 (align_corners=False)
    return_features: the 400 logits; otherwise their softmax
A safetensors state dict of this module (saved with `save_i3d`) is the pickle-free way to ship
converted weights. `width` scales every channel count; 1.0 is the real network (tests use less).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


def _same_pad_3d(x: torch.Tensor, kernel: list[int], stride: list[int]) -> list[int]:
    """TF 'SAME' padding for the last three dims, in F.pad order (w_lo, w_hi, h_lo, h_hi, t_lo, t_hi)."""
    pad: list[int] = []
    for i in [2, 1, 0]:
        size = x.size(2 + i)
        out = (size + stride[i] - 1) // stride[i]
        total = max((out - 1) * stride[i] + kernel[i] - size, 0)
        pad += [total // 2, total - total // 2]
    return pad


class Unit3D(nn.Module):
    """Conv3d (TF 'SAME' padding) + BatchNorm + ReLU; the logits layer has a bias and neither."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), norm: bool = True, relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.use_relu = list(kernel), list(stride), relu
        self.conv = nn.Conv3d(cin, cout, kernel, stride, bias=not norm)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(F.pad(x, _same_pad_3d(x, self.kernel, self.stride))))
        return F.relu(x) if self.use_relu else x


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = list(kernel), list(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, _same_pad_3d(x, self.kernel, self.stride), value=float("-inf"))
        return torch.max_pool3d(padded, self.kernel, self.stride)


class InceptionModule(nn.Module):
    def __init__(self, cin: int, widths: list[int]):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.b0 = Unit3D(cin, b0)
        self.b1a, self.b1b = Unit3D(cin, b1a), Unit3D(b1a, b1b, (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, b2a), Unit3D(b2a, b2b, (3, 3, 3))
        self.b3a, self.b3b = MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, b3)
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


# (name, six branch widths) of the Inception modules, and where the pools go.
_MIXED = {
    "Mixed_3b": [64, 96, 128, 16, 32, 32],
    "Mixed_3c": [128, 128, 192, 32, 96, 64],
    "Mixed_4b": [192, 96, 208, 16, 48, 64],
    "Mixed_4c": [160, 112, 224, 24, 64, 64],
    "Mixed_4d": [128, 128, 256, 24, 64, 64],
    "Mixed_4e": [112, 144, 288, 32, 64, 64],
    "Mixed_4f": [256, 160, 320, 32, 128, 128],
    "Mixed_5b": [256, 160, 320, 32, 128, 128],
    "Mixed_5c": [384, 192, 384, 48, 128, 128],
}
_POOL_BEFORE = {"Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)), "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2))}


class InceptionI3d(nn.Module):
    """Kinetics-400 I3D, RGB stream: (B, 3, T, H, W) -> (B, 400)."""

    def __init__(self, width: float = 1.0, num_classes: int = 400):
        super().__init__()
        self.width = width

        def c(n: int) -> int:
            return max(1, int(round(n * width)))

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["Conv3d_1a_7x7"] = Unit3D(3, c(64), (7, 7, 7), (2, 2, 2))
        layers["MaxPool3d_2a_3x3"] = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        layers["Conv3d_2b_1x1"] = Unit3D(c(64), c(64))
        layers["Conv3d_2c_3x3"] = Unit3D(c(64), c(192), (3, 3, 3))
        layers["MaxPool3d_3a_3x3"] = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        channels = c(192)
        for name, widths in _MIXED.items():
            if name in _POOL_BEFORE:
                pool, kernel, stride = _POOL_BEFORE[name]
                layers[pool] = MaxPool3dSame(kernel, stride)
            module = InceptionModule(channels, [c(w) for w in widths])
            layers[name] = module
            channels = module.out_channels
        self.features = nn.Sequential(layers)
        self.logits = Unit3D(channels, num_classes, norm=False, relu=False)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 255.0 * 2 - 1
        if resize:
            x = F.interpolate(x, size=[x.shape[2], 224, 224], mode="trilinear", align_corners=False)
        x = self.features(x)
        # TF: a (2, 7, 7) VALID average pool (global at 224x224, 16 frames), the logits conv, then the mean over time.
        kernel = [min(2, x.shape[2]), min(7, x.shape[3]), min(7, x.shape[4])]
        x = self.logits(F.avg_pool3d(x, kernel, stride=1))
        logits = x.mean(dim=[2, 3, 4])
        return logits if return_features else F.softmax(logits, dim=1)


def save_i3d(model: InceptionI3d, path) -> None:
    """Write the weights as safetensors, with the width in the metadata so the loader can rebuild it."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"architecture": "vidgan-i3d", "width": repr(model.width)})
