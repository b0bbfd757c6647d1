"""Each loss and penalty against values worked out by hand on tiny inputs."""

import math

import pytest
import torch
import torch.nn.functional as F

from vidgan.training import losses
from vidgan.training.losses import LOSSES, PENALTIES, get_loss, gradient_penalty, r1_penalty

REAL = torch.tensor([[2.0, -0.5], [0.0, 1.5]])  # (B=2, K=2): two clips, two heads
FAKE = torch.tensor([[-1.0, 0.5], [3.0, -2.0]])
R, F_ = [2.0, -0.5, 0.0, 1.5], [-1.0, 0.5, 3.0, -2.0]


def sig(v):
    return 1 / (1 + math.exp(-v))


def mean(values):
    return sum(values) / len(values)


def test_nonsat_matches_hand_computed_values():
    want_d = mean([-math.log(sig(r)) for r in R]) + mean([-math.log(1 - sig(f)) for f in F_])
    want_g = mean([-math.log(sig(f)) for f in F_])
    d_fn, g_fn = get_loss("nonsat")
    assert d_fn(REAL, FAKE).item() == pytest.approx(want_d, rel=1e-6)
    assert g_fn(FAKE).item() == pytest.approx(want_g, rel=1e-6)


def test_nonsat_label_smoothing_is_bce_against_the_smoothed_target():
    s = 0.1
    want = mean([-(0.9 * math.log(sig(r)) + 0.1 * math.log(1 - sig(r))) for r in R]) + mean([-math.log(1 - sig(f)) for f in F_])
    got = losses.d_loss_nonsat(REAL, FAKE, smoothing=s)
    assert got.item() == pytest.approx(want, rel=1e-6)
    bce = F.binary_cross_entropy_with_logits(REAL, torch.full_like(REAL, 0.9)) + F.binary_cross_entropy_with_logits(
        FAKE, torch.zeros_like(FAKE)
    )
    assert got.item() == pytest.approx(bce.item(), rel=1e-6)
    # smoothing=0 is bit-for-bit the unsmoothed loss.
    old = F.softplus(-REAL).mean() + F.softplus(FAKE).mean()
    assert torch.equal(losses.d_loss_nonsat(REAL, FAKE, smoothing=0.0), old)
    assert torch.equal(losses.d_loss_nonsat(REAL, FAKE), old)
    with pytest.raises(ValueError, match="smoothing"):
        losses.d_loss_nonsat(REAL, FAKE, smoothing=1.0)


def test_hinge_matches_hand_computed_values():
    # relu(1 - r) for r in (2, -0.5, 0, 1.5) = (0, 1.5, 1, 0); relu(1 + f) for f in (-1, 0.5, 3, -2) = (0, 1.5, 4, 0).
    d_fn, g_fn = get_loss("hinge")
    assert d_fn(REAL, FAKE).item() == pytest.approx((0 + 1.5 + 1 + 0) / 4 + (0 + 1.5 + 4 + 0) / 4)
    assert g_fn(FAKE).item() == pytest.approx(-(-1 + 0.5 + 3 - 2) / 4)
    assert d_fn(REAL, FAKE, smoothing=0.3).item() == d_fn(REAL, FAKE).item()  # no target to smooth


def test_wgan_matches_hand_computed_values():
    d_fn, g_fn = get_loss("wgan")
    assert d_fn(REAL, FAKE).item() == pytest.approx((-1 + 0.5 + 3 - 2) / 4 - (2 - 0.5 + 0 + 1.5) / 4)
    assert g_fn(FAKE).item() == pytest.approx(-0.125)
    assert d_fn(REAL, FAKE, smoothing=0.3).item() == d_fn(REAL, FAKE).item()


def test_lsgan_matches_hand_computed_values():
    # (r - 1)^2 = (1, 2.25, 1, 0.25); f^2 = (1, 0.25, 9, 4); (f - 1)^2 = (4, 0.25, 4, 9).
    d_fn, g_fn = get_loss("lsgan")
    assert d_fn(REAL, FAKE).item() == pytest.approx(0.5 * 4.5 / 4 + 0.5 * 14.25 / 4)
    assert g_fn(FAKE).item() == pytest.approx(0.5 * 17.25 / 4)
    # Smoothed real target 0.9: (r - 0.9)^2 = (1.21, 1.96, 0.81, 0.36).
    assert d_fn(REAL, FAKE, smoothing=0.1).item() == pytest.approx(0.5 * 4.34 / 4 + 0.5 * 14.25 / 4)


def test_registry_names_and_unknown_names():
    assert list(LOSSES) == ["nonsat", "hinge", "wgan", "lsgan"]
    assert set(PENALTIES) == {"none", "r1", "gp"}
    for d_fn, g_fn in LOSSES.values():  # every loss takes 1-D logits too and gives a scalar
        assert d_fn(REAL[:, 0], FAKE[:, 0], smoothing=0.1).ndim == 0 and g_fn(FAKE[:, 0]).ndim == 0
    with pytest.raises(ValueError, match="available: nonsat, hinge, wgan, lsgan"):
        get_loss("wasserstein?")


def clips(seed, shape=(3, 2, 2, 4, 4)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_r1_of_a_linear_discriminator_is_the_squared_weight_norm():
    w = clips(0, (1, 2, 2, 4, 4))
    x = clips(1).requires_grad_(True)
    logits = (x * w).flatten(1).sum(1)  # D(x) = <w, x>: the gradient is w for every clip
    assert r1_penalty(logits, x).item() == pytest.approx(w.square().sum().item(), rel=1e-6)


def test_r1_of_a_quadratic_discriminator_is_the_mean_squared_norm_of_2x():
    x = clips(2).requires_grad_(True)
    logits = x.square().flatten(1).sum(1)  # D(x) = sum(x^2): the gradient is 2x
    want = mean([(2 * x[i].detach()).square().sum().item() for i in range(3)])
    assert r1_penalty(logits, x).item() == pytest.approx(want, rel=1e-6)
    # create_graph: the penalty itself is differentiable (the loop backpropagates through it).
    (g,) = torch.autograd.grad(r1_penalty(x.square().flatten(1).sum(1), x), x)
    assert torch.allclose(g, 8 * x.detach() / 3)
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(torch.zeros(3), clips(3))


class LinearCritic(torch.nn.Module):
    """D(x) = <w, x> with ||w|| chosen by the test; K copies of w / K as heads sum to the same gradient."""

    def __init__(self, norm, heads=1):
        super().__init__()
        w = clips(4, (2, 2, 4, 4))
        self.w = torch.nn.Parameter(w * (norm / w.norm()))
        self.heads = heads

    def forward(self, x):
        out = (x * self.w).flatten(1).sum(1)
        return out if self.heads == 1 else torch.stack([out / self.heads] * self.heads, dim=1)


def test_gradient_penalty_of_linear_critics():
    real, fake = clips(5), clips(6)
    assert gradient_penalty(LinearCritic(1.0), real, fake).item() < 1e-6
    assert gradient_penalty(LinearCritic(3.0), real, fake).item() == pytest.approx(4.0, rel=1e-5)
    assert gradient_penalty(LinearCritic(0.5), real, fake).item() == pytest.approx(0.25, rel=1e-5)
    assert gradient_penalty(LinearCritic(3.0, heads=2), real, fake).item() == pytest.approx(4.0, rel=1e-5)


def test_gradient_penalty_trains_d_and_is_reproducible():
    # A critic whose input gradient depends on x, so the random mix matters.
    D = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    real, fake = clips(7).requires_grad_(True), clips(8)
    penalty = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(0))
    penalty.backward()
    # Every weight shapes dD/dx, so every weight learns; the last bias does not change dD/dx at all.
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for name, p in D.named_parameters() if name != "3.bias")
    assert real.grad is None  # only D learns from the penalty
    again = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(0))
    other = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(1))
    assert again.item() == penalty.item() and other.item() != penalty.item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(0)).dtype == torch.float32


def test_mode_seeking_is_the_inverse_ratio_of_output_to_noise_distances():
    """MSGAN: 1 / (mean |G(z1) - G(z2)| / mean |z1 - z2|), first half of the batch against the second."""
    noise = torch.tensor([[0.0, 0.0], [1.0, 3.0]])  # pair distance: mean(|0-1|, |0-3|) = 2
    drawn = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 2.0]])  # pair distance: 1
    assert losses.mode_seeking(drawn, noise).item() == pytest.approx(2.0, rel=1e-4)
    # the same drawing for different noise (mode collapse) costs far more than different drawings
    same = torch.zeros(4, 3, 8, 8)
    varied = torch.randn(4, 3, 8, 8)
    z = torch.randn(4, 5)
    assert losses.mode_seeking(same, z) > 1000 * losses.mode_seeking(varied, z)
    assert losses.mode_seeking(varied[:1], z[:1]).item() == 0.0  # no pair in a batch of one
