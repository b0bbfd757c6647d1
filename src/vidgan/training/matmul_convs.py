"""3D convolutions whose gradients run as bf16 matrix products on CPU (`MatmulConvs`).

oneDNN's 3D weight-gradient kernels (and its transposed convs on small grids) run 3-5x slower than
its forward kernels on CPUs with bf16 matrix units, so inside `MatmulConvs` (a TorchFunctionMode,
entered by `vidgan.training.speed.StepPrecision` for CPU bf16 steps) conv3d and conv_transpose3d keep
oneDNN's forward and compute those gradients as matrix products (im2col / col2im), which run near the
matrix units' peak. Small convs, where copying the columns costs more than it saves, stay native.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# Use a matrix product where it does at least this many multiply-adds per element it copies:
# measured on AMX (2 cores), weight gradients win from 256 output channels, the transposed
# direction (col2im, which adds in fp32) from 512.
WEIGHT_GRAD_MIN_CHANNELS = 256
TRANSPOSED_MIN_CHANNELS = 512


def _triple(v) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


def _last(x: torch.Tensor) -> torch.Tensor:
    """(N, C, D, H, W) -> (N, D, H, W, C) view."""
    return x.permute(0, 2, 3, 4, 1)


def im2col(x: torch.Tensor, kernel, stride, padding, out_size) -> torch.Tensor:
    """(N*oD*oH*oW, kd*kh*kw*C): every output position's receptive field, channels fastest."""
    (kd, kh, kw), (sd, sh, sw), (pd, ph, pw), (oD, oH, oW) = kernel, stride, padding, out_size
    xp = F.pad(_last(x), (0, 0, pw, pw, ph, ph, pd, pd))
    cols = xp.unfold(1, kd, sd).unfold(2, kh, sh).unfold(3, kw, sw)[:, :oD, :oH, :oW]
    return cols.permute(0, 1, 2, 3, 5, 6, 7, 4).reshape(-1, kd * kh * kw * x.shape[1])


def col2im(cols: torch.Tensor, x_shape, kernel, stride, padding) -> torch.Tensor:
    """The adjoint of im2col: add every column back where it came from; fp32 sums, (N, C, D, H, W) out.

    Needs kernel % stride == 0 per axis: offset k = a * stride + r, so each of the
    (k / stride)^3 shifts `a` is one strided add over all residues `r` at once.
    """
    N, C, *size = x_shape
    out_size = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding)]
    shifts = [k // s for k, s in zip(kernel, stride)]
    blocks = [max(o + a - 1, -(-(n + 2 * p) // s)) for o, a, n, p, s in zip(out_size, shifts, size, padding, stride)]
    (oD, oH, oW), (sd, sh, sw), (ad, ah, aw) = out_size, stride, shifts
    out = torch.zeros((N, blocks[0], sd, blocks[1], sh, blocks[2], sw, C), dtype=torch.float32, device=cols.device)
    c = cols.float().view(N, oD, oH, oW, ad, sd, ah, sh, aw, sw, C)  # one conversion, not one per add
    for a in range(ad):
        for b in range(ah):
            for e in range(aw):
                out[:, a : a + oD, :, b : b + oH, :, e : e + oW] += c[:, :, :, :, a, :, b, :, e].permute(0, 1, 4, 2, 5, 3, 6, 7)
    out = out.view(N, blocks[0] * sd, blocks[1] * sh, blocks[2] * sw, C)
    (pd, ph, pw), (D, H, W) = padding, size
    return out[:, pd : pd + D, ph : ph + H, pw : pw + W].permute(0, 4, 1, 2, 3)


def _weight_matrix(w: torch.Tensor) -> torch.Tensor:
    """conv weight (Co, Ci, kd, kh, kw) -> (Co, kd*kh*kw*Ci), matching im2col's column order."""
    return w.permute(0, 2, 3, 4, 1).reshape(w.shape[0], -1)


def conv3d_weight_grad(grad_out: torch.Tensor, x: torch.Tensor, kernel, stride, padding) -> torch.Tensor:
    """d loss / d weight of conv3d(x, w): grad_out^T @ im2col(x), as (Co, Ci, kd, kh, kw)."""
    co, ci = grad_out.shape[1], x.shape[1]
    cols = im2col(x, kernel, stride, padding, grad_out.shape[2:])
    dw = _last(grad_out).reshape(-1, co).t() @ cols
    return dw.view(co, *kernel, ci).permute(0, 4, 1, 2, 3)


def conv3d_input_grad(grad_out: torch.Tensor, w: torch.Tensor, x_shape, stride, padding) -> torch.Tensor:
    """d loss / d x of conv3d(x, w) (the transposed convolution of grad_out): col2im(grad_out @ W)."""
    cols = _last(grad_out).reshape(-1, w.shape[0]) @ _weight_matrix(w)
    return col2im(cols, x_shape, w.shape[2:], stride, padding).to(grad_out.dtype)


def _native_input_grad(g, x, w, stride, padding):
    return torch.ops.aten.convolution_backward(g, x, w, None, stride, padding, (1, 1, 1), False, (0, 0, 0), 1, (True, False, False))[0]


def _native_weight_grad(g, x, w, stride, padding, transposed=False, output_padding=(0, 0, 0)):
    return torch.ops.aten.convolution_backward(
        g, x, w, None, stride, padding, (1, 1, 1), transposed, output_padding, 1, (False, True, False)
    )[1]


def _divisible(kernel, stride) -> bool:
    return all(k % s == 0 for k, s in zip(kernel, stride))


def _bias_grad(g: torch.Tensor) -> torch.Tensor:
    return g.float().sum((0, 2, 3, 4)).to(g.dtype)


class _Conv3d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, stride, padding):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, b is not None)
        return F.conv3d(x, w, b, stride, padding)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        stride, padding, has_bias = ctx.conf
        gx = gw = gb = None
        co = w.shape[0]
        if ctx.needs_input_grad[0]:
            small = co >= TRANSPOSED_MIN_CHANNELS and _divisible(w.shape[2:], stride)
            gx = conv3d_input_grad(g, w, x.shape, stride, padding) if small else _native_input_grad(g, x, w, stride, padding)
        if ctx.needs_input_grad[1]:
            gw = (
                conv3d_weight_grad(g, x, w.shape[2:], stride, padding)
                if co >= WEIGHT_GRAD_MIN_CHANNELS
                else _native_weight_grad(g, x, w, stride, padding)
            )
        if has_bias and ctx.needs_input_grad[2]:
            gb = _bias_grad(g)
        return gx, gw, gb, None, None


def _conv_transpose3d(x, w, b, stride, padding, output_padding):
    """Transposed conv = the input gradient of the conv with the same weight (Ci_T channels in)."""
    if w.shape[0] >= TRANSPOSED_MIN_CHANNELS and _divisible(w.shape[2:], stride):
        size = [(n - 1) * s - 2 * p + k + op for n, s, p, k, op in zip(x.shape[2:], stride, padding, w.shape[2:], output_padding)]
        y = conv3d_input_grad(x, w, (x.shape[0], w.shape[1], *size), stride, padding)
        return y if b is None else y + b.view(1, -1, 1, 1, 1)
    return F.conv_transpose3d(x, w, b, stride, padding, output_padding)


class _ConvTranspose3d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, stride, padding, output_padding):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, output_padding, b is not None)
        return _conv_transpose3d(x, w, b, stride, padding, output_padding)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        stride, padding, output_padding, has_bias = ctx.conf
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = F.conv3d(g, w, None, stride, padding)
        if ctx.needs_input_grad[1]:
            if w.shape[0] >= WEIGHT_GRAD_MIN_CHANNELS:  # the conv's weight gradient with x and g swapped
                gw = conv3d_weight_grad(x, g, w.shape[2:], stride, padding)
            else:
                gw = _native_weight_grad(g, x, w, stride, padding, transposed=True, output_padding=output_padding)
        if has_bias and ctx.needs_input_grad[2]:
            gb = _bias_grad(g)
        return gx, gw, gb, None, None, None


def _args(names, defaults, args, kwargs) -> dict:
    values = dict(zip(names, args))
    return {n: values.get(n, kwargs.get(n, d)) for n, d in zip(names, defaults)}


_CONV3D = ("input", "weight", "bias", "stride", "padding", "dilation", "groups"), (None, None, None, 1, 0, 1, 1)
_CONVT3D = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"), (None, None, None, 1, 0, 0, 1, 1)


class MatmulConvs(TorchFunctionMode):
    """Inside this context, CPU bf16 3D convolutions compute slow directions as bf16 matmuls.

    Applies to conv3d / conv_transpose3d with groups=1, dilation=1 and numeric padding whose
    inputs run in bf16 (autocast or bf16 tensors) on the CPU; everything else runs as usual.
    Results equal the native kernels' up to bf16 rounding (both accumulate in fp32).
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.conv3d or func is torch.conv_transpose3d:
            a = _args(*(_CONV3D if func is torch.conv3d else _CONVT3D), args, kwargs)
            x, w = a["input"], a["weight"]
            dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
            plain = a["groups"] == 1 and _triple(a["dilation"]) == (1, 1, 1) and not isinstance(a["padding"], str)
            if plain and dtype == torch.bfloat16 and x.device.type == "cpu" and x.dim() == 5:
                with torch.autocast("cpu", enabled=False):
                    b = a["bias"]
                    x, w, b = x.to(dtype), w.to(dtype), None if b is None else b.to(dtype)
                    stride, padding = _triple(a["stride"]), _triple(a["padding"])
                    if func is torch.conv3d:
                        return _Conv3d.apply(x, w, b, stride, padding)
                    return _ConvTranspose3d.apply(x, w, b, stride, padding, _triple(a["output_padding"]))
        return func(*args, **kwargs)
