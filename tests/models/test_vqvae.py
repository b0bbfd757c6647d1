"""Video VQ-VAE: shapes of the token grid, EMA codebook with dead-code restarts, learns to reconstruct."""

import pytest
import torch

from vidgan.models.vqvae import VQVAE, Codebook, downsample_steps, psnr
from vidgan.run import Run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "factors, grid", [((4, 4, 4), (2, 4, 4)), ((2, 4, 4), (4, 4, 4)), ((1, 2, 2), (8, 8, 8)), ((2, 1, 1), (4, 16, 16))]
)
def test_downsampling_sets_the_token_grid(factors, grid):
    torch.manual_seed(0)
    model = VQVAE(3, 8, 4, 16, factors, 1)
    x = torch.rand(2, 3, 8, 16, 16) * 2 - 1
    recon, q = model(x)
    assert q.codes.shape == (2, *grid) and recon.shape == x.shape
    assert model.grid(8, 16, 16) == grid
    assert model.decode(model.encode(x)).shape == x.shape


def test_bad_downsampling_and_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="power of two"):
        downsample_steps((3, 4, 4))
    with pytest.raises(ValueError, match="do not divide"):
        VQVAE(1, 8, 4, 16, (4, 4, 4), 1)(torch.zeros(1, 1, 6, 16, 16))


def test_codebook_follows_its_clusters_by_ema_and_restarts_dead_codes():
    torch.manual_seed(0)
    centres = torch.tensor([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])
    book = Codebook(8, 3, decay=0.8, restart_threshold=0.5)
    rng = torch.Generator().manual_seed(0)
    for _ in range(40):
        pts = centres[torch.randint(3, (96,), generator=rng)] + 0.05 * torch.randn(96, 3, generator=rng)
        q = book(pts.t().reshape(1, 3, 96, 1, 1), rng)
    assert int(book.ema_updates) == 40
    assert int(book.restarts) > 0  # 8 codes for 3 clusters: the spare ones die and get restarted
    # every centre has a code on it; restarted codes land on the data too (none stays at its random start)
    dist = torch.cdist(centres, book.embeddings)
    assert dist.min(dim=1).values.max() < 0.1
    assert dist.min(dim=0).values.max() < 0.5
    assert q.used >= 3 and q.perplexity > 2.9
    assert torch.allclose(q.z_q.squeeze().t(), pts, atol=0.3)
    # straight-through: the gradient reaches the encoder output unchanged
    z = pts.t().reshape(1, 3, 96, 1, 1).clone().requires_grad_(True)
    book.eval()
    book(z).z_q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))


@pytest.mark.slow  # an end-to-end learning test: 150 steps
def test_vqvae_learns_to_reconstruct_a_tiny_dataset(mnist16, tmp_path):
    """32 Moving MNIST clips of 8x16x16, 150 steps: well above the best constant clip, many codes in use."""
    from helpers import tiny_config
    from vidgan.data.clips import ClipDataset
    from vidgan.data.video_io import to_model
    from vidgan.training.loop import train
    from vidgan.training.two_stage import load_vqvae

    overrides = {
        "model.name": "vqvae",
        "train.steps": 150,
        "train.log_every": 10,
        "vq.width": 16,
        "vq.downsample": [2, 2, 2],
        "vq.lr": 0.001,
    }
    result = train(tiny_config(mnist16, **overrides), tmp_path / "vq", progress=False, log=lambda s: None)
    assert result.step == 150 and result.psnr is not None
    model, cfg, step = load_vqvae(tmp_path / "vq")
    x = to_model(ClipDataset(mnist16).get_batch(range(32))[0])
    codes = model.encode(x)
    recon_psnr = psnr(x, model.decode(codes))
    best_constant = psnr(x, x.mean(0, keepdim=True).expand_as(x))  # the mean clip: what a model that ignores its input gets
    untrained = psnr(x, VQVAE.from_config(cfg.model, cfg.vq).eval()(x)[0].detach())
    assert recon_psnr > best_constant + 2.0 and recon_psnr > untrained + 8, (recon_psnr, best_constant, untrained)
    assert len(codes.unique()) >= 32  # of 128
    log = Run(tmp_path / "vq").read_log()
    last = log[-1]
    assert last["ema_updates"] == 150 and last["restarts"] > 0 and last["codes_used"] >= 16
    assert {"psnr", "perplexity", "recon", "commitment"} <= set(last) and last["perplexity"] > 8
    assert log[0]["psnr"] < last["psnr"]
    assert (tmp_path / "vq" / "samples").is_dir() and step == 150
