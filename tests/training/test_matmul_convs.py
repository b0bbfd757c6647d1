"""Matmul conv gradients (CPU bf16): the same outputs and gradients as oneDNN's kernels."""

import pytest
import torch
import torch.nn.functional as F

from vidgan.training import matmul_convs


def _run_conv(fn, x, w, b, matmul):
    x, w, b = (t.clone().requires_grad_() for t in (x, w, b))
    with torch.autocast("cpu", dtype=torch.bfloat16), matmul_convs.MatmulConvs() if matmul else torch.enable_grad():
        y = fn(x, w, b)
    (y.float() * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum().backward()
    return [y.float(), x.grad, w.grad, b.grad]


SHAPES = [((4, 4, 4), (2, 2, 2), 0), ((3, 4, 4), (1, 2, 2), 0)]


@pytest.mark.parametrize(
    "kind,kernel,stride,output_padding",
    [("conv", *s) for s in SHAPES] + [("transposed", *s) for s in SHAPES] + [("transposed", (4, 4, 4), (2, 2, 2), 1)],
)
def test_matmul_convs_match_the_native_kernels(monkeypatch, kind, kernel, stride, output_padding):
    # force the matmul paths (normally only for wide layers) on small shapes
    monkeypatch.setattr(matmul_convs, "WEIGHT_GRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(matmul_convs, "TRANSPOSED_MIN_CHANNELS", 1)
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 8, 6)
    if kind == "conv":
        w, b = torch.randn(7, 6, *kernel) * 0.1, torch.randn(7)
        fn = lambda x, w, b: F.conv3d(x, w, b, stride, 1)  # noqa: E731
    else:
        w, b = torch.randn(6, 7, *kernel) * 0.1, torch.randn(7)
        fn = lambda x, w, b: F.conv_transpose3d(x, w, b, stride, 1, output_padding)  # noqa: E731
    native, mine = _run_conv(fn, x, w, b, False), _run_conv(fn, x, w, b, True)
    x, w, b = (t.clone().requires_grad_() for t in (x, w, b))
    y = fn(x, w, b)
    (y * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum().backward()
    exact = [y.detach(), x.grad, w.grad, b.grad]  # fp32 reference
    for name, n, m, e in zip(["output", "input grad", "weight grad", "bias grad"], native, mine, exact):
        err_native = ((n.float() - e).norm() / e.norm()).item()
        err_mine = ((m.float() - e).norm() / e.norm()).item()
        assert m.shape == e.shape and err_mine <= 2 * err_native + 2e-3, (name, err_mine, err_native)
