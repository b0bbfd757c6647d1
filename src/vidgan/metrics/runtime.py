"""Running a feature network fast on a CPU: ONNX Runtime when it is installed (extra `vidgan[fast]`).

PyTorch's eager CPU kernels leave most of a CPU idle on EfficientNet-Lite0's depthwise
convolutions; ONNX Runtime's fused kernels run the same fp32 arithmetic several times faster
(benchmarks/metric_throughput.py prints the ratio). The network is exported once from the very
weights PyTorch loads and kept in the cache folder under a name that carries the weights' SHA-256,
the torch version and the input size, so it is never stale; scores agree with the PyTorch path
to far within the protocol's 0.5% (tests/metrics/test_fast_extraction.py).

`VIDGAN_RUNTIME=torch` (or `runtime="torch"`) forces the PyTorch path.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from vidgan.metrics.frechet import default_cache_dir

OPSET = 17


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def choose_runtime(requested: str, device: torch.device, precision: str) -> str:
    """'onnxruntime' or 'torch': ONNX Runtime for fp32 on a CPU when it is installed, unless asked otherwise."""
    if requested == "auto":
        requested = os.environ.get("VIDGAN_RUNTIME") or "auto"
    if requested not in ("auto", "torch", "onnxruntime"):
        raise ValueError(f"runtime must be auto, torch or onnxruntime, got {requested!r}")
    fits = device.type == "cpu" and precision == "fp32"
    if requested == "onnxruntime":
        if not fits:
            raise ValueError("the onnxruntime path runs fp32 on a CPU; use runtime torch for GPUs and bf16")
        if not onnx_available():
            raise ValueError("onnxruntime is not installed: pip install 'vidgan[fast]'")
        return "onnxruntime"
    return "onnxruntime" if requested == "auto" and fits and onnx_available() else "torch"


def _default_dir() -> Path:
    return default_cache_dir() / "onnx"  # beside the cached real statistics


class OnnxNetwork:
    """`module` (float (N, C, H, W) -> float (N, F)) exported to ONNX and run by ONNX Runtime."""

    def __init__(self, module: torch.nn.Module, example: torch.Tensor, tag: str, threads: int | None = None, folder: Path | None = None):
        import onnxruntime as ort

        folder = Path(folder or _default_dir())
        path = folder / f"{tag}-torch{torch.__version__.split('+')[0]}-opset{OPSET}.onnx"
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=folder)
            os.close(fd)
            # Exported in eval mode: the exporter restores the mode it found afterwards, and a wrapper
            # left in training mode would put the network's BatchNorm layers into training too.
            module.eval()
            try:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the exporter's constant-folding notes are not the user's business
                    torch.onnx.export(
                        module, (example,), tmp, input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                        opset_version=OPSET, dynamo=False,
                    )  # fmt: skip
                os.replace(tmp, path)  # two processes exporting at once both write whole files
            finally:
                Path(tmp).unlink(missing_ok=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path, self.version = path, ort.__version__

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"x": np.ascontiguousarray(x.detach().float().cpu().numpy())})[0]
        return torch.from_numpy(out)
