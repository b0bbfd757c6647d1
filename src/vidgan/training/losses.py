"""GAN losses and regularizers as pure functions of discriminator outputs (StyleGAN2-ADA style: no loop state here).

Logits have shape (B,) or (B, K) (K discriminator heads, e.g. video and image); every loss averages over all
elements. Video inputs are (B, C, T, H, W).

Losses, by name in LOSSES (name -> (d_loss(real_logits, fake_logits, smoothing=0.0), g_loss(fake_logits))):
  nonsat  non-saturating cross-entropy (Goodfellow et al. 2014)
  hinge   hinge loss (Lim & Ye 2017; Miyato et al. 2018)
  wgan    Wasserstein critic loss; pair it with the "gp" penalty for WGAN-GP (Gulrajani et al. 2017)
  lsgan   least squares (Mao et al. 2017)

`smoothing` is one-sided label smoothing (Salimans et al. 2016): the real target becomes 1 - smoothing. Only
nonsat and lsgan have a target to smooth; hinge and wgan accept the keyword and ignore it, so the loop can pass
it to any loss.

Penalties, by name in PENALTIES (the loop calls each with its own arguments and scales it itself):
  none  no penalty
  r1    r1_penalty(real_logits, real_inputs): the caller multiplies by gamma / 2 (Mescheder et al. 2018)
  gp    gradient_penalty(D, real, fake): the caller multiplies by lambda (10 in the WGAN-GP paper)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossPair = tuple[Callable[..., torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def _real_target(smoothing: float) -> float:
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    return 1.0 - smoothing


def d_loss_nonsat(real_logits: torch.Tensor, fake_logits: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Binary cross-entropy with logits: real against 1 - smoothing, fake against 0 (softplus form, stable)."""
    target = _real_target(smoothing)
    real_term = F.softplus(-real_logits)  # -log D(real)
    if smoothing:
        real_term = target * real_term + smoothing * F.softplus(real_logits)  # ... - s * log(1 - D(real))
    return real_term.mean() + F.softplus(fake_logits).mean()


def g_loss_nonsat(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log D(fake) (Goodfellow et al. 2014)."""
    return F.softplus(-fake_logits).mean()


def d_loss_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """mean(relu(1 - real)) + mean(relu(1 + fake)); `smoothing` is ignored (hinge has no target to smooth)."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_loss_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def d_loss_wgan(real_logits: torch.Tensor, fake_logits: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Critic loss mean(fake) - mean(real); `smoothing` is ignored. Without a penalty the critic is unbounded."""
    return fake_logits.mean() - real_logits.mean()


def g_loss_wgan(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def d_loss_lsgan(real_logits: torch.Tensor, fake_logits: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """0.5 * mean((real - (1 - smoothing))^2) + 0.5 * mean(fake^2)."""
    target = _real_target(smoothing)
    return 0.5 * (real_logits - target).square().mean() + 0.5 * fake_logits.square().mean()


def g_loss_lsgan(fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (fake_logits - 1.0).square().mean()


# nonsat first: error messages list names in this order, the default first.
LOSSES: dict[str, LossPair] = {
    "nonsat": (d_loss_nonsat, g_loss_nonsat),
    "hinge": (d_loss_hinge, g_loss_hinge),
    "wgan": (d_loss_wgan, g_loss_wgan),
    "lsgan": (d_loss_lsgan, g_loss_lsgan),
}


def get_loss(name: str) -> LossPair:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}")
    return LOSSES[name]


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||grad_x sum(D(x))||^2 at the real clips (the raw penalty: scale by gamma / 2).

    `real_inputs` must have had requires_grad_(True) before D ran on it. With DiffAugment, pass the clips
    before augmentation (as StyleGAN2-ADA does): the penalty is then on D composed with the augmentation.
    """
    if not real_inputs.requires_grad:
        raise ValueError("r1_penalty: call real_inputs.requires_grad_(True) before running D on it")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def gradient_penalty(
    D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """WGAN-GP: mean((||grad D(x_hat)||_2 - 1)^2) at x_hat = a * real + (1 - a) * fake, a ~ U[0, 1] per clip.

    The norm is per clip over all of C, T, H, W; with K heads the gradient is that of their sum. The penalty
    runs in float32 with autocast off, so fp16 gradients cannot overflow; real and fake are detached, so only
    D's parameters receive its gradient.
    """
    real, fake = real.detach().float(), fake.detach().float()
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    device = generator.device if generator is not None else real.device
    a = torch.rand(shape, generator=generator, device=device).to(real.device)
    x_hat = (a * real + (1.0 - a) * fake).requires_grad_(True)
    with torch.autocast(device_type=x_hat.device.type, enabled=False):
        logits = D(x_hat).float()
    (grad,) = torch.autograd.grad(logits.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).square().mean()


PENALTIES: dict[str, Callable[..., torch.Tensor] | None] = {"none": None, "r1": r1_penalty, "gp": gradient_penalty}


def mode_seeking(drawings: torch.Tensor, noise: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's mode-seeking loss (Mao et al., CVPR 2019): the batch's first half against its second
    half, 1 / (mean |G(z1) - G(z2)| / mean |z1 - z2|). Small when different noise gives different
    drawings; large when G ignores its noise (mode collapse)."""
    half = len(drawings) // 2
    if half == 0:
        return drawings.new_zeros((), dtype=torch.float32)
    d_out = (drawings[:half].float() - drawings[half : 2 * half].float()).abs().mean()
    d_in = (noise[:half].float() - noise[half : 2 * half].float()).abs().mean()
    return 1.0 / (d_out / d_in + eps)
