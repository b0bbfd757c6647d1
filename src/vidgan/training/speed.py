"""How a training step runs fast: precision, memory format, conv kernels, compile, fused Adam.

`resolve_speed(train_config, device)` turns the run's settings (`auto` or explicit) into a
`SpeedPlan`; the trainer prints `plan.describe()` at start and applies it:

- precision: autocast to bf16 on CPUs with bf16 matrix units (AMX, AVX512-BF16) and on CUDA
  GPUs with bf16 (Ampere and later); fp16 with a GradScaler on older GPUs; fp32 elsewhere.
  Weights, optimizer state, losses, R1/GP penalties and statistics stay fp32.
- channels-last-3d memory format for weights and activations wherever reduced precision runs.
- matmul conv gradients (CPU, bf16): oneDNN's 3D weight-gradient kernels (and its transposed
  convs on small grids) run 3-5x slower than its forward kernels, so `MatmulConvs` computes those
  as bf16 matrix products (im2col / col2im), which run near the matrix units' peak.
- compile: torch.compile, falling back to eager (with one warning) when compiling fails.
- fused Adam (one kernel for all parameters) in reduced precision; fp32 keeps torch's reference
  (foreach) Adam, so an fp32 run reproduces a plain-PyTorch run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16() -> bool:
    """True where oneDNN runs bf16 on matrix units (AMX) or AVX512-BF16: there bf16 beats fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_has_amx() -> bool:
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


# Below this width (the model's widest layer, ModelConfig.max_channels) convolutions are too small for
# bf16 matrix units to pay for the casts: the tiny preset (32) trains no faster in bf16 on an AMX
# CPU, the small preset (128) about 1.5x and the 64px VideoGAN (512) 2-2.5x (benchmarks/train_throughput.py).
AUTO_MIN_WIDTH = 64


def auto_precision(device: torch.device, width: int | None = None) -> tuple[str, str]:
    """(precision, why) for `precision: auto` on this device, for a model whose widest layer is `width`."""
    if width is not None and width < AUTO_MIN_WIDTH:
        return "fp32", f"layers of {width} channels are too narrow for reduced precision to pay"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"{torch.cuda.get_device_name(device)} has bf16 tensor cores"
        return "fp16", f"{torch.cuda.get_device_name(device)} has no bf16: fp16 with a GradScaler"
    if device.type == "cpu":
        if cpu_has_bf16():
            return "bf16", "CPU has bf16 matrix units (" + ("AMX" if cpu_has_amx() else "AVX512-BF16") + ")"
        return "fp32", "CPU has no bf16 matrix units"
    return "fp32", f"no reduced-precision default for {device.type}"


@dataclass
class SpeedPlan:
    device: torch.device
    precision: str  # fp32 | bf16 | fp16
    why: str
    channels_last: bool
    matmul_convs: bool
    compile: bool
    fused_adam: bool
    grad_accum: int = 1

    @property
    def dtype(self) -> torch.dtype | None:
        return DTYPES[self.precision]

    def describe(self, micro_batch: int | None = None) -> str:
        accum = f", {self.grad_accum} micro-batches of {micro_batch} per step" if micro_batch and self.grad_accum > 1 else ""
        return (
            f"speed: {self.device}, {self.precision} ({self.why}), channels-last-3d {'on' if self.channels_last else 'off'}, "
            f"matmul conv gradients {'on' if self.matmul_convs else 'off'}, compile {'on' if self.compile else 'off'}, "
            f"{'fused' if self.fused_adam else 'foreach'} Adam{accum}"
        )


def resolve_speed(train, device: torch.device, width: int | None = None) -> SpeedPlan:
    """train: a TrainConfig (precision, channels_last, compile, grad_accum); width: the model's widest layer."""
    if train.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {train.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if train.grad_accum < 1:
        raise ValueError(f"grad_accum must be at least 1, got {train.grad_accum}")
    if train.precision == "auto":
        precision, why = auto_precision(device, width)
    else:
        precision, why = train.precision, "asked for"
        if precision == "fp16" and device.type == "cpu":
            raise ValueError("precision fp16 needs a CUDA GPU (CPUs have no fast fp16 path); use bf16 or fp32 on CPU")
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"{torch.cuda.get_device_name(device)} has no bf16; use --precision fp16 (or auto)")
    reduced = precision != "fp32"
    channels_last = reduced and device.type in ("cpu", "cuda") if train.channels_last is None else bool(train.channels_last)
    matmul = precision == "bf16" and device.type == "cpu" and not train.compile
    # fp32 keeps torch's reference (foreach) Adam so fp32 runs reproduce plain-PyTorch runs: the fused
    # kernel rounds some updates 1 ulp differently, and measured on the tiny preset that grew to a third
    # of the weights' movement within 6 steps (1-process vs 2-process runs then no longer agree).
    fused = reduced and fused_adam_available(device)
    return SpeedPlan(device, precision, why, channels_last, matmul, bool(train.compile), fused, train.grad_accum)


# ----------------------------------------------------------------------------- applying the plan


def to_channels_last(module: nn.Module) -> nn.Module:
    """5-D weights to channels-last-3d, 4-D ones to channels-last (nn.Module.to accepts one format only)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.dim() in (4, 5):
            fmt = torch.channels_last_3d if tensor.dim() == 5 else torch.channels_last
            tensor.data = tensor.data.contiguous(memory_format=fmt)
    return module


def fp32_batch_statistics(module: nn.Module) -> nn.Module:
    """Feed every BatchNorm layer fp32 inputs, so batch statistics are summed in fp32 under autocast.

    Needed for the cross-process BatchNorm (models.layers.BatchNorm under DDP), which sums its
    statistics itself in its input's dtype; the single-process kernels accumulate in fp32 already.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(_float_input)
    return module


def _float_input(module, args):
    return (args[0].float(), *args[1:])


def fused_adam_available(device: torch.device) -> bool:
    try:
        torch.optim.Adam([torch.zeros(1, device=device, requires_grad=True)], fused=True)
        return True
    except Exception:  # noqa: BLE001 - no fused kernel for this device (or no such device)
        return False


def make_adam(params, lr: float, betas, plan: SpeedPlan) -> torch.optim.Adam:
    if plan.fused_adam:
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), fused=True)
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), foreach=True)


def match_grad_layout(opt: torch.optim.Optimizer) -> None:
    """Give every gradient its parameter's memory layout before a fused optimizer step.

    torch's fused Adam walks parameter, gradient and state memory in step, so a gradient with other
    strides than its parameter (DDP hands some back that way) is applied to the wrong elements.
    """
    for group in opt.param_groups:
        if not group.get("fused"):
            continue
        for p in group["params"]:
            if p.grad is not None and p.grad.stride() != p.stride():
                p.grad = torch.empty_like(p).copy_(p.grad)


class StepPrecision:
    """What the GAN step needs from the plan: a forward context, and backward/step with loss scaling.

    The forward context autocasts (and routes CPU bf16 convs through MatmulConvs); losses and
    penalties are computed outside it, in fp32. fp16 scales each loss with its own GradScaler.
    """

    def __init__(self, plan: SpeedPlan | None = None):
        self.device_type = plan.device.type if plan else "cpu"
        self.dtype = plan.dtype if plan else None
        self.matmul_convs = bool(plan and plan.matmul_convs)
        fp16 = self.dtype is torch.float16
        self.scaler_d = torch.amp.GradScaler(self.device_type) if fp16 else None
        self.scaler_g = torch.amp.GradScaler(self.device_type) if fp16 else None

    @property
    def reduced(self) -> bool:
        return self.dtype is not None

    def forward(self):
        stack = contextlib.ExitStack()
        if self.dtype is not None:
            stack.enter_context(torch.autocast(self.device_type, dtype=self.dtype))
        if self.matmul_convs:
            stack.enter_context(MatmulConvs())
        return stack

    @staticmethod
    def backward(loss: torch.Tensor, scaler) -> None:
        (loss if scaler is None else scaler.scale(loss)).backward()

    @staticmethod
    def step(opt: torch.optim.Optimizer, scaler) -> None:
        match_grad_layout(opt)
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
            scaler.update()

    def state_dict(self) -> dict:
        return {k: s.state_dict() for k, s in (("scaler_d", self.scaler_d), ("scaler_g", self.scaler_g)) if s is not None}

    def load_state_dict(self, state: dict) -> None:
        for key, scaler in (("scaler_d", self.scaler_d), ("scaler_g", self.scaler_g)):
            if scaler is not None and key in state:
                scaler.load_state_dict(state[key])


class Compiler:
    """torch.compile for one run. The first failure (at wrap time or at a first call, where compiling
    happens) is reported once and turns every module of the run back to eager: training continues."""

    def __init__(self, enabled: bool, log=print):
        self.enabled, self.log, self.failed = enabled, log, False

    def fail(self, err: Exception) -> None:
        if not self.failed:
            first = (str(err).strip().splitlines() or [""])[0][:200]
            self.log(f"warning: torch.compile failed ({type(err).__name__}: {first}); continuing in eager mode")
        self.failed = True

    def __call__(self, module: nn.Module):
        if not self.enabled:
            return module
        try:
            return Compiled(module, torch.compile(module), self)
        except Exception as err:  # noqa: BLE001 - torch.compile unavailable here (platform, Python version)
            self.fail(err)
            return module


class Compiled:
    """A compiled module that runs its eager self once compiling has failed anywhere in the run.

    Attribute access (requires_grad_, no_sync, last_mask, z_dim, ...) goes to the eager module."""

    def __init__(self, eager: nn.Module, compiled, compiler: Compiler):
        self.eager, self.compiled, self.compiler = eager, compiled, compiler

    def __call__(self, *args, **kwargs):
        if not self.compiler.failed:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compiler error: keep training in eager mode
                self.compiler.fail(err)
        return self.eager(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.__dict__["eager"], name)


# ----------------------------------------------------------------------------- matmul conv kernels (CPU, bf16)

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
