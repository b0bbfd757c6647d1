"""The synced BatchNorm's statistics under bf16 autocast."""

import torch
import torch.distributed as dist

from vidgan.models import layers


def test_synced_batchnorm_sums_in_float32_under_bf16(monkeypatch):
    """The cross-rank sums use E[x^2] - E[x]^2, which bf16 cannot hold for an offset input.

    A one-rank "world" (the all-reduce is the identity) runs the synced path; it must match
    torch's own BatchNorm on the same bf16 values computed in float32.
    """
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)
    monkeypatch.setattr(layers._AllReduceSum, "apply", staticmethod(lambda t: t))
    torch.manual_seed(0)
    x = (50.0 + torch.randn(4, 3, 2, 5, 5)).to(torch.bfloat16)  # var 1 under a mean of 50
    bn = layers.BatchNorm(3)
    ref = torch.nn.BatchNorm3d(3)
    out = bn(x)
    expected = ref(x.float())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.02)
    torch.testing.assert_close(bn.running_var, ref.running_var, atol=1e-3, rtol=1e-3)
