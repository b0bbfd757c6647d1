"""The continuous-time models (ctvgan, and sprites, which shares its codes, motion and discriminator):
any length, any timestamps, frames that do not depend on what else is rendered, and a discriminator
that uses the time gaps between the frames it sees."""

from __future__ import annotations

import pytest
import torch

from vidgan.config import model_config
from vidgan.models.layers import Condition
from vidgan.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")
MODELS = ["ctvgan", "sprites"]


def tiny(name: str = "ctvgan", **overrides):
    base = dict(name=name, z_dim=16, w_dim=32, g_channels=32, d_channels=8, max_channels=32, frames=8, resolution=16, channels=1,
                motion_dim=8, motion_spacing=3.0, sparse_frames=3, fuse_resolution=8)  # fmt: skip
    return model_config(**(base | overrides))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("frames", [1, 5, 8, 23])
def test_generates_clips_of_any_length_in_range(frames, name):
    torch.manual_seed(0)
    G, _ = build_model(tiny(name))
    z = torch.randn(2, G.z_dim_for(frames))
    video = G.eval()(z, frames=frames)
    assert video.shape == (2, 1, frames, 16, 16)
    assert video.min() >= -1 and video.max() <= 1 and video.std() > 0


@pytest.mark.parametrize("name", MODELS)
def test_a_frame_depends_only_on_its_noise_and_time(name):
    torch.manual_seed(0)
    G, _ = build_model(tiny(name))
    G.eval()
    z = torch.randn(3, G.z_dim_for(40))
    with torch.no_grad():
        long = G(z, frames=40)
        alone = G(z, times=torch.tensor([[7.0], [20.0], [39.0]]))
        odd = G(z, times=torch.tensor([2.5, 11.25]))  # any real time, not only frame indices
        around = G(z, times=torch.tensor([2.0, 2.5, 3.0]))
    for i, t in enumerate([7, 20, 39]):
        torch.testing.assert_close(alone[i, :, 0], long[i, :, t], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(odd[:, :, 0], around[:, :, 1])
    # the same noise prefix: a 16-frame clip is the start of the 40-frame clip
    short = G(z[:, : G.z_dim_for(16)], frames=16)
    torch.testing.assert_close(short, long[:, :, :16], rtol=1e-4, atol=1e-5)
    # motion is continuous: a hundredth of a frame changes a frame far less than half a frame does
    with torch.no_grad():
        half = (odd[:, :, 0] - G(z, times=torch.tensor([3.0]))[:, :, 0]).abs().mean()
        hundredth = (odd[:, :, 0] - G(z, times=torch.tensor([2.51]))[:, :, 0]).abs().mean()
    assert 0 < half and hundredth < 0.2 * half, (hundredth, half)


@pytest.mark.parametrize("name", MODELS)
def test_content_is_shared_by_the_frames_and_motion_moves_them(name):
    torch.manual_seed(0)
    G, _ = build_model(tiny(name))
    G.eval()
    z = torch.randn(4, G.z_dim)
    content, motion = G.split_z(z)
    same_motion = G.join_z(content, motion[:1].expand_as(motion))
    with torch.no_grad():
        clips = G(same_motion)
        moved = G(G.join_z(content, torch.randn_like(motion)))
    assert not torch.allclose(clips[0], clips[1])  # other content, same motion: other clips
    assert not torch.allclose(clips[0], moved[0])  # same content, other motion: other clip


def test_a_clip_rendered_alone_equals_the_same_clip_in_a_batch_in_eval_mode():
    torch.manual_seed(0)
    G, _ = build_model(tiny())
    z = torch.randn(4, G.z_dim)
    with torch.no_grad():
        together, alone = G.eval()(z), G(z[2:3])
    torch.testing.assert_close(alone, together[2:3], rtol=1e-4, atol=1e-5)


def test_ctvgan_has_no_settings_of_other_models():
    with pytest.raises(ValueError, match="ctvgan has no setting 'synthesis'"):
        from vidgan.config import validated

        validated({"model": {"name": "ctvgan", "synthesis": "style"}}, "test")


def test_short_noise_is_refused():
    G, _ = build_model(tiny())
    with pytest.raises(ValueError, match="z_dim_for"):
        G(torch.randn(1, G.z_dim_for(4)), frames=20)


def test_discriminator_judges_k_frames_and_uses_their_time_gaps():
    torch.manual_seed(0)
    _, D = build_model(tiny())
    x = torch.randn(2, 1, 3, 16, 16)
    times = torch.tensor([[0.0, 1.0, 7.0], [0.0, 1.0, 7.0]])
    permuted = torch.tensor([[0.0, 6.0, 7.0], [0.0, 6.0, 7.0]])  # the same frames, the gaps swapped
    a, b = D(x, times=times), D(x, times=permuted)
    assert a.shape == (2,)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="3 frames"):
        D(torch.randn(2, 1, 4, 16, 16), times=torch.zeros(2, 4))


@pytest.mark.parametrize("fuse", [4, 8, 16])
def test_discriminator_fuses_frames_at_any_resolution(fuse):
    _, D = build_model(tiny(fuse_resolution=fuse))
    assert D(torch.randn(2, 1, 3, 16, 16), times=torch.tensor([[0.0, 2.0, 5.0]] * 2)).shape == (2,)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kind", ["class", "text", "first-frame"])
def test_conditions(kind, name):
    torch.manual_seed(0)
    G, D = build_model(tiny(name, condition=kind, num_classes=3, text_dim=6))
    cond = Condition(labels=torch.tensor([0, 2]), text=torch.randn(2, 6), first_frame=torch.rand(2, 1, 16, 16) * 2 - 1)
    video = G(torch.randn(2, G.z_dim), cond)
    assert video.shape == (2, 1, 8, 16, 16)
    if kind == "first-frame":
        torch.testing.assert_close(video[:, :, 0], cond.first_frame)
    logits = D(video[:, :, [0, 3, 5]], cond, times=torch.tensor([[0.0, 3.0, 5.0]] * 2))
    assert logits.shape == (2,) and torch.isfinite(logits).all()


# ----------------------------------------------------------------------------- training through the loop

CT = {"model.name": "ctvgan", "model.motion_dim": 8, "model.w_dim": 32, "model.z_dim": 16, "model.sparse_frames": 3}


def test_training_renders_only_the_frames_d_sees(mnist_data, tmp_path, monkeypatch):
    from helpers import tiny_config
    from vidgan.models import ctvgan
    from vidgan.training.loop import train

    rendered = []
    original = ctvgan.Generator.draw
    monkeypatch.setattr(ctvgan.Generator, "draw", lambda self, w, *a: rendered.append(a[-1].numel()) or original(self, w, *a))
    train(tiny_config(mnist_data, **CT, **{"train.steps": 2, "train.num_samples": 2}), tmp_path / "run", progress=False, log=lambda s: None)
    batch = 8  # tiny preset
    # per step: fakes for D (batch x 3 frames) and for G (batch x 3); grids render 2 clips x 8 frames,
    # the EMA generator's standing statistics 16 clips x 8 frames
    assert rendered.count(batch * 3) == 4 and all(n in (batch * 3, 2 * 8, 16 * 8) for n in rendered)


@pytest.mark.slow  # an end-to-end learning test: 60 steps and a resumed run, per model
@pytest.mark.parametrize("name", MODELS)
def test_tiny_model_moves_toward_the_data_and_resumes_exactly(mnist_data, tmp_path, name):
    from helpers import tiny_config
    from vidgan.data.clips import ClipDataset
    from vidgan.metrics.pixel_stats import pixel_statistics_distance
    from vidgan.pipeline import VideoPipeline
    from vidgan.run import Run, load_weights
    from vidgan.training.loop import train

    real = ClipDataset(mnist_data).get_batch(range(32))[0].numpy()
    quiet = {"progress": False, "log": lambda s: None}
    extra = {**CT, "model.name": name, "loss.penalty": "r1", "loss.penalty_every": 2, "loss.augment": "translation"}
    if name == "sprites":  # with the mode-seeking term too
        extra |= {"loss.mode_seeking": 0.05}

    def distance(run):
        return pixel_statistics_distance(VideoPipeline.from_pretrained(run)(n=32, seed=1), real)

    train(tiny_config(mnist_data, **extra, **{"train.steps": 1}), tmp_path / "r0", **quiet)
    train(tiny_config(mnist_data, **extra, **{"train.steps": 60, "train.checkpoint_every": 30}), tmp_path / "full", **quiet)
    before, after = distance(tmp_path / "r0"), distance(tmp_path / "full")
    assert after < 0.7 * before, (before, after)

    part = tmp_path / "part"
    train(tiny_config(mnist_data, **extra, **{"train.steps": 30}), part, **quiet)
    train(tiny_config(mnist_data, **extra, **{"train.steps": 60}), part, resume=True, **quiet)
    a, b = load_weights(Run(tmp_path / "full").latest(), "generator_ema"), load_weights(Run(part).latest(), "generator_ema")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5, msg=key)


@pytest.mark.slow  # an end-to-end learning test: 40 steps
def test_the_saved_ema_generator_samples_with_batchnorm_statistics_of_its_own_weights(mnist_data, tmp_path):
    """Standing statistics: in eval mode the saved EMA generator gives what its weights give with a
    large batch's statistics; the running statistics of the training generator (which an EMA of the
    weights alone would carry) do clearly worse."""
    from helpers import tiny_config
    from vidgan.pipeline import VideoPipeline
    from vidgan.run import Run, load_weights
    from vidgan.training.loop import train

    cfg = tiny_config(mnist_data, **CT, **{"train.steps": 40, "train.ema_beta": 0.9, "train.lr_g": 2e-3})
    train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    G = VideoPipeline.from_pretrained(tmp_path / "run").generator  # the EMA generator, as sampling loads it
    ema, raw = ({k: v.clone() for k, v in G.state_dict().items()}, load_weights(Run(tmp_path / "run").latest(), "generator"))
    z = torch.randn(256, G.z_dim, generator=torch.Generator().manual_seed(0))

    def eval_vs_batch_statistics(buffers: dict) -> float:
        G.load_state_dict({**ema, **buffers})
        with torch.no_grad():
            batch = G.train()(z)
            G.load_state_dict({**ema, **buffers})
            return (G.eval()(z) - batch).abs().mean().item()

    is_norm = lambda k: "running_" in k  # noqa: E731
    saved = eval_vs_batch_statistics({})
    copied = eval_vs_batch_statistics({k: v for k, v in raw.items() if is_norm(k)})
    assert saved < 0.5 * copied, (saved, copied)
