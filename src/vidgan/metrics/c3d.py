"""The UCF-101 C3D network that the video Inception Score is defined with (Tran et al. 2015; TGAN, MoCoGAN, StyleGAN-V).

Video IS = exp(E_x KL(p(y|x) || p(y))) over C3D's 101 UCF-101 class probabilities of 16-frame
clips (inception_score.py does the arithmetic, 10 splits). StyleGAN-V calls it `isv2048_ucf`;
vidgan names it `isv2048_16f`.

The weights cannot be installed from a package registry. A user with internet gets StyleGAN-V's
TorchScript port of TGANv2's Caffe-converted model from
    https://www.dropbox.com/s/jxpu7avzdc9n97q/c3d_ucf101.pt?dl=1
and passes it with `--c3d-weights PATH` (extractors.py loads it; called as `net(x)` with x the
uint8 levels as float, (B, 3, 16, H, W), returning class probabilities). We found no published
SHA-256 for that file; vidgan records the SHA-256 of the file it loads next to every score.

`C3D` below is the same architecture written out, so converted weights can travel as a
pickle-free safetensors state dict (`save_c3d`): RGB -> BGR, every frame resized to 112x112
(bilinear), minus a per-channel mean (a buffer, so it travels with the weights), then
conv1a (64) pool(1,2,2), conv2a (128) pool 2, conv3a/b (256) pool 2, conv4a/b (512) pool 2,
conv5a/b (512) pool 2 (all 3x3x3 convs with ReLU; pools round up, as in Chainer), fc6 and fc7
(4096, ReLU), fc8 (101), softmax. `width` scales every channel count; 1.0 is the real network
(the tests use less).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

C3D_SOURCE = "https://www.dropbox.com/s/jxpu7avzdc9n97q/c3d_ucf101.pt?dl=1"
C3D_FRAMES = 16
C3D_SIZE = 112
# The Sports-1M mean that Caffe's C3D subtracts, per BGR channel (TGANv2's C3D port).
SPORTS1M_MEAN_BGR = (90.25164795, 97.65701294, 101.4083252)


class C3D(nn.Module):
    """(B, 3, 16, H, W) uint8 levels as float -> (B, 101) class probabilities (or the fc8 logits)."""

    def __init__(self, width: float = 1.0, num_classes: int = 101):
        super().__init__()
        self.width = width
        self.size = C3D_SIZE  # every frame is resized to size x size

        def c(n: int) -> int:
            return max(1, int(round(n * width)))

        plan = [
            ("conv1a", 3, c(64)),
            ("conv2a", c(64), c(128)),
            ("conv3a", c(128), c(256)),
            ("conv3b", c(256), c(256)),
            ("conv4a", c(256), c(512)),
            ("conv4b", c(512), c(512)),
            ("conv5a", c(512), c(512)),
            ("conv5b", c(512), c(512)),
        ]
        for name, cin, cout in plan:
            setattr(self, name, nn.Conv3d(cin, cout, 3, padding=1))
        self.fc6 = nn.Linear(c(512) * 4 * 4, c(4096))
        self.fc7 = nn.Linear(c(4096), c(4096))
        self.fc8 = nn.Linear(c(4096), num_classes)
        self.register_buffer("mean", torch.tensor(SPORTS1M_MEAN_BGR).view(1, 3, 1, 1, 1))

    def forward(self, x: torch.Tensor, return_logits: bool = False) -> torch.Tensor:
        b, _, t, h, w = x.shape
        size = self.size
        x = x.flip(1)  # RGB -> BGR, as the Caffe weights were trained
        if h != size or w != size:
            frames = x.transpose(1, 2).reshape(b * t, 3, h, w)
            frames = F.interpolate(frames, size=[size, size], mode="bilinear", align_corners=False)
            x = frames.reshape(b, t, 3, size, size).transpose(1, 2)
        x = x - self.mean
        x = F.max_pool3d(F.relu(self.conv1a(x)), [1, 2, 2], ceil_mode=True)
        x = F.max_pool3d(F.relu(self.conv2a(x)), [2, 2, 2], ceil_mode=True)
        x = F.max_pool3d(F.relu(self.conv3b(F.relu(self.conv3a(x)))), [2, 2, 2], ceil_mode=True)
        x = F.max_pool3d(F.relu(self.conv4b(F.relu(self.conv4a(x)))), [2, 2, 2], ceil_mode=True)
        x = F.max_pool3d(F.relu(self.conv5b(F.relu(self.conv5a(x)))), [2, 2, 2], ceil_mode=True)
        x = F.relu(self.fc6(x.flatten(1)))
        logits = self.fc8(F.relu(self.fc7(x)))
        return logits if return_logits else logits.softmax(1)


def save_c3d(model: C3D, path) -> None:
    """Write the weights as safetensors, with the width in the metadata so the loader can rebuild it."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"architecture": "vidgan-c3d", "width": repr(model.width)})
