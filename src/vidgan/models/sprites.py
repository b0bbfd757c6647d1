"""Sprites: objects moving over a plain, static background, each drawn once per clip and only moved.

A model for footage like Moving MNIST, bouncing balls or sprites over a still backdrop, and for
nothing else: it builds in that a clip is `layers` objects (each `layer_size` of the frame wide, drawn
from its own content code by one shared DCGAN image network), that each moves in a straight line
bouncing off learned walls (plus a small learned offset from the motion features), and that the
background is a smooth, static backdrop (its 4x4 average, enlarged). Objects keep their shape as
they move because they are never redrawn. Placed at whole pixels (`snap`), every frame shows them
exactly as drawn. For footage with a moving camera, textures or anything that changes shape, use
ctvgan, whose content codes, motion encoder and discriminator this model shares.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidgan.config import SpritesConfig
from vidgan.models import ctvgan
from vidgan.models.layers import EqualLinear, ImageDecoder


def fold(x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """The straight line x folded back into [-bound, bound] (a triangle wave): where a point moving along
    x ends up when it bounces off walls at +-bound."""
    b = bound.abs() + 1e-3
    return b - (torch.remainder(x + b, 4 * b) - 2 * b).abs()


def snap_to_pixels(pos: torch.Tensor, size: float, width: int, height: int) -> torch.Tensor:
    """Layer centres (..., 2) as (x, y) in [-1, 1] units moved to the nearest place where the layer's
    pixels fall on the frame's (a whole-pixel shift, which copies the layer as drawn; a fraction of a
    pixel resamples, and so blurs, it). The gradient is the unsnapped one (straight-through), so
    training still moves the layers smoothly.

    With align_corners=False a layer of side size (in frame widths) drawn at size * width pixels lines
    up with the frame's pixels when its centre is (size - 1) plus a whole number of pixels (2 / width).

    Why: resampling at a fraction of a pixel is a blur, which clip features see as clearly as a wrong
    shape (docs/experiments/).
    """
    pixel = pos.new_tensor([2.0 / width, 2.0 / height])
    snapped = (size - 1) + torch.round((pos - (size - 1)) / pixel) * pixel
    return pos + (snapped - pos).detach()


class LayeredMotion(nn.Module):
    """Motion that moves what was drawn instead of redrawing it.

    The image network draws, once per clip, a backdrop (kept smooth) and `layers` layers with an alpha
    channel, frame-sized or, with `size` < 1, sprites that fraction of the frame wide. Each layer
    moves in a straight line from a random start at a random
    drift per frame (both from the clip's first motion code), bouncing off walls at a learned distance from
    the centre (`fold`), plus a bounded learned offset from the motion features at time t (zero at the
    start). Frames are the layers translated to their positions at t and composited over the backdrop,
    the first layer in front. A frame depends on (z, t) alone, as with the other syntheses. With `snap`,
    layers are placed at whole pixels (`snap_to_pixels`), so every frame shows them as drawn.
    """

    def __init__(self, layers: int, channels: int, motion_dim: int, feature_dim: int, size: float = 1.0, snap: bool = False):
        super().__init__()
        self.n, self.c, self.size, self.snap = layers, channels, float(size), snap
        self.canvas_channels = channels + layers * (channels + 1)
        self.alpha_channels = [channels + i * (channels + 1) + channels for i in range(layers)]
        self.start = EqualLinear(motion_dim, 2 * layers)
        # Displacement per frame, starting at about a twentieth of the frame (std 0.1 in [-1, 1] units
        # per axis) and learned at the full rate: started faster and learned slower, layers kept jumping
        # several times as far a frame as the data's objects move.
        self.drift = EqualLinear(motion_dim, 2 * layers)
        with torch.no_grad():
            self.drift.weight.mul_(0.1)
        self.offset = EqualLinear(feature_dim, 2 * layers)
        nn.init.zeros_(self.offset.weight)
        # walls: a frame-sized layer's centre starts bouncing at half way; a sprite's where its edge meets the frame's
        self.bound = nn.Parameter(torch.full((2 * layers,), 0.5 if size >= 1 else 1.0 - size))

    def positions(self, code: torch.Tensor, features: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """(B, motion_dim), (B, K, feature_dim), (B, K) -> layer centres (B, K, layers, 2) in [-1, 1] units."""
        line = self.start(code)[:, None] + self.drift(code)[:, None] * times[..., None]
        # The offset is kept within an eighth of the frame and the walls inside it: unbounded, a layer
        # learned to jump out of view and another to jump in, so the frames of a clip showed
        # different things one after another
        wiggle = 0.25 * torch.tanh(self.offset(features))
        return fold(line + wiggle, self.bound.clamp(-1.0, 1.0)).unflatten(-1, (self.n, 2))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        # Runs saved before "drift" kept it as "velocity" with lr_mul 0.1 (weight and bias scaled by 0.1
        # at run time): the same map in the new form, so they generate what they did (to float rounding).
        for name in ("weight", "bias"):
            old = state_dict.pop(f"{prefix}velocity.{name}", None)
            if old is not None:
                state_dict[f"{prefix}drift.{name}"] = old * 0.1
        super()._load_from_state_dict(state_dict, prefix, *args)

    def drawing(self, canvas: torch.Tensor) -> torch.Tensor:
        """What the layers show, wherever they move: (B, layers * (C + 1), H, W), colour premultiplied by
        alpha (a transparent pixel's colour is never seen) and alpha, in [0, 1]."""
        layers = canvas[:, self.c :].unflatten(1, (self.n, self.c + 1))
        alpha = (layers[:, :, self.c :] + 1) / 2
        return torch.cat([(layers[:, :, : self.c] + 1) / 2 * alpha, alpha], dim=2).flatten(1, 2)

    def alpha(self, canvas: torch.Tensor) -> torch.Tensor:
        """The layers' alpha in [0, 1]: (B, layers, h, w)."""
        return (canvas[:, self.alpha_channels] + 1) / 2

    def forward(self, canvas: torch.Tensor, code: torch.Tensor, features: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """canvas (B, canvas_channels, h, w) in [-1, 1] -> frames (B, K, C, H, W), H = h / size."""
        B, _, h, w = canvas.shape
        H, W = round(h / self.size), round(w / self.size)  # the frame (the canvas is a layer's size)
        K, c = times.shape[1], self.c
        layers = canvas[:, c:].unflatten(1, (self.n, c + 1))
        # The background is only a smooth backdrop (its 4x4 average, enlarged): given a full drawing of
        # its own, the generator drew everything there and left the layers, and so the clips, still.
        # Anything sharp is on a layer, and so can move.
        background = F.interpolate(F.adaptive_avg_pool2d(canvas[:, :c], 4), size=(H, W), mode="bilinear", align_corners=False)
        pos = self.positions(code, features, times.to(canvas.dtype))  # (B, K, n, 2) as (x, y)
        if self.snap:
            pos = snap_to_pixels(pos.float(), self.size, W, H).to(pos.dtype)
        theta = torch.zeros(B * K * self.n, 2, 3, dtype=canvas.dtype, device=canvas.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / self.size
        # output pixel p shows the layer's pixel (p - position) / size (frame units; a layer spans size)
        theta[:, :, 2] = -pos.reshape(-1, 2) / self.size
        grid = F.affine_grid(theta, [B * K * self.n, c + 1, H, W], align_corners=False)
        src = layers[:, None].expand(-1, K, -1, -1, -1, -1).flatten(0, 2)
        alpha = (src[:, c:] + 1) / 2  # in [0, 1]; 0 where the layer is moved in from outside
        # premultiplied colour, so a fractional shift blends an edge linearly (no dark fringe)
        moved = F.grid_sample(torch.cat([src[:, :c] * alpha, alpha], dim=1), grid, align_corners=False).unflatten(0, (B, K, self.n))
        out = background[:, None].expand(-1, K, -1, -1, -1)
        for i in reversed(range(self.n)):  # the first layer in front
            out = moved[:, :, i, :c] + out * (1 - moved[:, :, i, c:])
        return out


class Generator(ctvgan.Generator):
    """ctvgan's codes and motion; each clip's objects and backdrop drawn once and moved by LayeredMotion.
    Extra outputs: "mask" (the objects' alpha, for loss.mask_l1) and "drawing" (the objects as drawn
    with the noise they came from, for loss.mode_seeking)."""

    extra_outputs = ("mask", "drawing")

    def __init__(self, cfg: SpritesConfig):
        nn.Module.__init__(self)
        side = cfg.resolution * cfg.layer_size  # the objects are drawn at their own size
        if side < 4 or side != 2 ** round(math.log2(side)):
            raise ValueError(
                f"model.layer_size {cfg.layer_size} makes {side:g}-pixel objects in {cfg.resolution}-pixel frames; "
                "choose a size that gives a power of two >= 4 (e.g. 1.0, 0.5)"
            )
        self._build_codes(cfg, codes_per_clip=cfg.layers)
        self.layers = LayeredMotion(cfg.layers, cfg.channels, cfg.motion_dim, self.motion.out_dim, cfg.layer_size, cfg.snap)
        # one object per code: a backdrop, the object and its alpha, which starts nearly transparent
        # (alpha 0.12), so no frame-sized rectangles move about at the start
        drawn = 2 * cfg.channels + 1
        self.decoder = ImageDecoder(self.w_dim, drawn, int(side), cfg.g_channels, cfg.max_channels, out_bias=[0.0] * (drawn - 1) + [-1.0])
        self.register_buffer("w_avg", torch.zeros(self.w_dim))

    def canvas(self, w: torch.Tensor) -> torch.Tensor:
        """Styles (B * layers, w_dim) -> (B, backdrop + layers, h, w): each object drawn by itself; the
        backdrop is the mean of the backdrops drawn with them."""
        canvas = self.decoder(w).unflatten(0, (-1, self.codes_per_clip))  # (B, n, 2C + 1, h, w)
        c = self.channels
        return torch.cat([canvas[:, :, :c].mean(dim=1), canvas[:, :, c:].flatten(1, 2)], dim=1)

    def draw(self, w: torch.Tensor, content: torch.Tensor, codes: torch.Tensor, motion: torch.Tensor, times: torch.Tensor):
        B, n = len(codes), self.codes_per_clip
        canvas = self.canvas(w)
        drawing = self.layers.drawing(canvas).unflatten(1, (n, -1)).flatten(0, 1)  # one object per row
        extra = {"mask": self.layers.alpha(canvas), "drawing": (drawing, content.reshape(B * n, -1))}
        return self.layers(canvas, codes[:, 0], motion, times).transpose(1, 2), extra


def build_sprites(cfg: SpritesConfig) -> tuple[nn.Module, nn.Module]:
    return Generator(cfg), ctvgan.Discriminator(cfg)
