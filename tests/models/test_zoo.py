"""Every registered video GAN keeps the shared G/D interface, trains, and has its model's defining property."""

import copy

import pytest
import torch

from helpers import tiny_config
from vidgan.data.clips import ClipDataset
from vidgan.metrics.pixel_stats import pixel_statistics_distance
from vidgan.models.layers import Condition
from vidgan.models.registry import build_model, model_names
from vidgan.pipeline import VideoPipeline
from vidgan.presets import resolve_config
from vidgan.training.loop import train

MODELS = ["videogan", "videogan-2stream", "tgan", "mocogan"]
pytestmark = pytest.mark.usefixtures("one_thread")
LONG = ["tgan", "mocogan"]  # models whose motion can run past the training length
# (preset, resolution, frames): the bigger presets at 32x32x8 to stay fast; tiny also at full size.
SHAPES = [("tiny", 32, 8), ("tiny", 64, 16), ("small", 32, 8), ("64px", 32, 8)]


def config(name, preset="tiny", resolution=32, frames=8, channels=3, **update):
    return resolve_config(preset, model=name).model.model_copy(
        update={"resolution": resolution, "frames": frames, "channels": channels, **update}
    )


def heads(name):
    return 2 if name == "mocogan" else 1  # MoCoGAN: video and image discriminator


def test_all_models_are_registered():
    assert set(MODELS) <= set(model_names())


@pytest.mark.parametrize("preset,resolution,frames", SHAPES)
@pytest.mark.parametrize("name", MODELS)
def test_shapes_range_and_gradients(name, preset, resolution, frames):
    torch.manual_seed(0)
    cfg = config(name, preset, resolution, frames)
    G, D = build_model(cfg)
    assert G.z_dim_for(frames) == G.z_dim
    video = G(torch.randn(2, G.z_dim))
    assert video.shape == (2, 3, frames, resolution, resolution)
    assert video.min() >= -1 and video.max() <= 1
    logits = D(video)
    assert logits.shape == ((2,) if heads(name) == 1 else (2, heads(name)))
    logits.sum().backward()
    for part, module in (("G", G), ("D", D)):
        for pname, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{part}.{pname}"


@pytest.mark.parametrize("name", MODELS)
def test_class_and_first_frame_conditions(name):
    torch.manual_seed(0)
    labels = torch.tensor([0, 2])
    G, D = build_model(config(name, condition="class", num_classes=3))
    video = G(torch.randn(2, G.z_dim), Condition(labels=labels))
    assert video.shape == (2, 3, 8, 32, 32)
    assert D(video, Condition(labels=labels)).shape[0] == 2

    G, D = build_model(config(name, condition="first-frame"))
    first = torch.rand(2, 3, 32, 32) * 2 - 1
    cond = Condition(first_frame=first)
    video = G(torch.randn(2, G.z_dim), cond)
    assert torch.equal(video[:, :, 0], first)
    assert not torch.equal(video[:, :, 1], first)
    assert D(video, cond).shape[0] == 2
    if name in LONG:
        long = G(torch.randn(2, G.z_dim_for(16)), cond, frames=16)
        assert long.shape[2] == 16 and torch.equal(long[:, :, 0], first)


@pytest.mark.parametrize("name", MODELS)
def test_condition_none_ignores_a_given_condition(name):
    torch.manual_seed(0)
    G, _ = build_model(config(name))
    G.eval()
    z = torch.randn(2, G.z_dim)
    assert torch.equal(G(z), G(z, Condition(labels=torch.tensor([0, 1]))))


@pytest.mark.parametrize("name", MODELS)
def test_longer_clips_continue_the_trained_length(name):
    torch.manual_seed(0)
    G, _ = build_model(config(name))
    G.eval()
    if name not in LONG:
        with pytest.raises(ValueError, match="frames"):
            G(torch.randn(2, G.z_dim), frames=16)
        with pytest.raises(ValueError, match="frames"):
            G.z_dim_for(16)
        return
    z_long = torch.randn(2, G.z_dim_for(16))
    long = G(z_long, frames=16)
    assert long.shape == (2, 3, 16, 32, 32) and long.abs().max() <= 1
    # The motion is generated causally (a GRU), so the first 8 frames of the long clip are the 8-frame clip.
    z_short = z_long if name == "tgan" else z_long[:, : G.z_dim]
    assert torch.allclose(long[:, :, :8], G(z_short), atol=1e-5)


def test_mocogan_noise_layout():
    G, _ = build_model(config("mocogan", content_dim=12, noise_dim=5, motion_dim=7))
    assert G.z_dim == 12 + 8 * 5 and G.z_dim_for(20) == 12 + 20 * 5
    z = torch.randn(3, G.z_dim)
    content, motion = G.split_z(z)
    assert content.shape == (3, 12) and motion.shape == (3, 8, 5)
    assert torch.equal(G.join_z(content, motion), z)
    with pytest.raises(ValueError, match="z_dim_for"):
        G(torch.randn(3, G.z_dim), frames=16)


def _mean_pairwise_distance(x: torch.Tensor) -> float:
    x = x.flatten(1)
    return (torch.cdist(x, x).sum() / (len(x) * (len(x) - 1))).item()


def test_mocogan_content_fixes_the_first_frame_more_than_motion():
    # Content reaches every frame directly; motion noise only through the GRU's motion codes. So on a fresh
    # G, clips that share content but not motion start closer together than clips that share motion only.
    torch.manual_seed(0)
    G, _ = build_model(config("mocogan", channels=1))
    with torch.no_grad():
        for _ in range(3):  # BatchNorm's running statistics from G's own activations, then eval mode
            G(torch.randn(32, G.z_dim))
    G.eval()
    content, motion = G.split_z(torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        same_content = G(G.join_z(content[:1].expand(8, -1), motion))
        same_motion = G(G.join_z(content, motion[:1].expand(8, -1, -1)))
    d_content = _mean_pairwise_distance(same_content[:, :, 0])
    d_motion = _mean_pairwise_distance(same_motion[:, :, 0])
    assert 0 < d_content < 0.5 * d_motion, (d_content, d_motion)
    # and motion is not ignored: with the content fixed, frames still differ between clips and over time
    assert (same_content[:, :, 1:] - same_content[:, :, :-1]).abs().mean() > 0


def test_mocogan_image_discriminator_judges_random_frames():
    torch.manual_seed(0)
    _, D = build_model(config("mocogan", image_frames=3))
    x = torch.rand(4, 3, 8, 32, 32) * 2 - 1
    torch.manual_seed(5)
    a = D(x)
    torch.manual_seed(5)
    assert torch.equal(D(x), a)  # the frame choice follows torch's global generator
    assert a.shape == (4, 2) and not torch.equal(D(x)[:, 1], a[:, 1])


def test_two_stream_mask_is_exposed_for_a_sparsity_prior():
    torch.manual_seed(0)
    G, _ = build_model(config("videogan-2stream"))
    video, extra = G(torch.randn(2, G.z_dim), extras=True)
    mask = extra["mask"]
    assert mask.shape == (2, 1, 8, 32, 32) and mask.min() >= 0 and mask.max() <= 1
    (video.mean() + 0.1 * mask.abs().mean()).backward()  # how a trainer adds the L1 prior
    assert G.stem[0].weight.grad.abs().sum() > 0
    copy.deepcopy(G)  # the trainer's EMA copy works after a forward pass
    torch.testing.assert_close(G(torch.zeros(1, G.z_dim)), G(torch.zeros(1, G.z_dim), extras=True)[0])


# Steps per model: a few seconds each on 2 CPU cores. GAN distances wobble from step to step; each count sits
# where its neighbours (+-10 steps) also pass with margin (ratios 0.33-0.54 at the time of writing).
LEARN_STEPS = {"videogan": 110, "videogan-2stream": 100, "tgan": 120, "mocogan": 70}


@pytest.mark.slow  # an end-to-end learning test: up to 120 steps per model
@pytest.mark.parametrize("name", MODELS)
def test_each_model_moves_toward_the_data(name, mnist_data, tmp_path):
    real = ClipDataset(mnist_data).get_batch(range(32))[0].numpy()

    def distance_after(steps):  # train raises NonFiniteLossError on a NaN loss
        run = tmp_path / f"steps{steps}"
        train(tiny_config(mnist_data, **{"model.name": name, "train.steps": steps}), run, progress=False, log=lambda s: None)
        return pixel_statistics_distance(VideoPipeline.from_pretrained(run)(n=32, seed=1), real)

    before, after = distance_after(1), distance_after(LEARN_STEPS[name])
    assert after < 0.7 * before, (before, after)
