"""How a training step runs fast: precision, memory format, conv kernels, compile, fused Adam.

`resolve_speed(train_config, device)` turns the run's settings (`auto` or explicit) into a
`SpeedPlan`; the trainer prints `plan.describe()` at start and applies it:

- precision: autocast to bf16 on CPUs with bf16 matrix units (AMX, AVX512-BF16) and on CUDA
  GPUs with bf16 (Ampere and later); fp16 with a GradScaler on older GPUs; fp32 elsewhere.
  Weights, optimizer state, losses, R1/GP penalties and statistics stay fp32.
- channels-last-3d memory format for weights and activations wherever reduced precision runs.
- matmul conv gradients (CPU, bf16): oneDNN's 3D weight-gradient kernels (and its transposed
  convs on small grids) run 3-5x slower than its forward kernels, so `MatmulConvs` (matmul_convs.py) computes those
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

from vidgan.training.matmul_convs import MatmulConvs

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


# Below this width (the model's widest layer, GANModel.max_channels) convolutions are too small for
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

    Attribute access (requires_grad_, no_sync, extra_outputs, z_dim, ...) goes to the eager module."""

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
