"""The continuous-time generator (ctvgan): any length, any timestamps, frames that do not depend on
what else is rendered, and a discriminator that uses the time gaps between the frames it sees."""

from __future__ import annotations

import pytest
import torch

from vidgan.config import ModelConfig
from vidgan.models.layers import Condition
from vidgan.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides) -> ModelConfig:
    base = dict(name="ctvgan", z_dim=16, w_dim=32, g_channels=32, d_channels=8, max_channels=32, frames=8, resolution=16, channels=1,
                motion_dim=8, motion_spacing=3.0, sparse_frames=3, fuse_resolution=8)  # fmt: skip
    if overrides.get("synthesis") == "sprites":  # layers half the frame wide, each drawn from its own code
        overrides |= SPRITES
    return ModelConfig(**(base | overrides))


SPRITES = {"synthesis": "layers", "layer_size": 0.5, "own_layer_codes": True, "layer_supersample": True}
SYNTHESIS = ["dcgan", "resize-conv", "style", "layers", "sprites"]


@pytest.mark.parametrize("synthesis", SYNTHESIS)
@pytest.mark.parametrize("frames", [1, 5, 8, 23])
def test_generates_clips_of_any_length_in_range(frames, synthesis):
    torch.manual_seed(0)
    G, _ = build_model(tiny(synthesis=synthesis))
    z = torch.randn(2, G.z_dim_for(frames))
    video = G.eval()(z, frames=frames)
    assert video.shape == (2, 1, frames, 16, 16)
    assert video.min() >= -1 and video.max() <= 1 and video.std() > 0


@pytest.mark.parametrize("synthesis", SYNTHESIS)
def test_a_frame_depends_only_on_its_noise_and_time(synthesis):
    torch.manual_seed(0)
    G, _ = build_model(tiny(synthesis=synthesis))
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


@pytest.mark.parametrize("synthesis", SYNTHESIS)
def test_content_is_shared_by_the_frames_and_motion_moves_them(synthesis):
    torch.manual_seed(0)
    G, _ = build_model(tiny(synthesis=synthesis))
    G.eval()
    z = torch.randn(4, G.z_dim)
    content, motion = G.split_z(z)
    same_motion = G.join_z(content, motion[:1].expand_as(motion))
    with torch.no_grad():
        clips = G(same_motion)
        moved = G(G.join_z(content, torch.randn_like(motion)))
    assert not torch.allclose(clips[0], clips[1])  # other content, same motion: other clips
    assert not torch.allclose(clips[0], moved[0])  # same content, other motion: other clip


def test_fold_bounces_a_straight_line_between_its_walls():
    from vidgan.models.moving_layers import fold

    x = torch.linspace(-5, 5, 1001)
    y = fold(x, torch.tensor(0.5))
    assert y.min() >= -0.501 and y.max() <= 0.501
    torch.testing.assert_close(fold(torch.tensor([0.2, 0.7, 1.6]), torch.tensor(0.5)), torch.tensor([0.2, 0.3, -0.4]), atol=5e-3, rtol=0)
    speed = (y[1:] - y[:-1]).abs()
    assert speed.max() < 0.0101 and (speed > 0.0099).float().mean() > 0.97  # the same speed but at the turns


@pytest.mark.parametrize("size", [1.0, 0.5])
def test_layers_move_what_was_drawn_without_redrawing_it(size):
    """Synthesis "layers": a frame is the clip's drawing translated to where its layer is at time t
    (size 0.5: a sprite drawn at 16x16 and placed, pixel for pixel, in a 32x32 frame)."""
    from vidgan.models.moving_layers import LayeredMotion

    torch.manual_seed(0)
    move = LayeredMotion(layers=1, channels=1, motion_dim=4, feature_dim=6, size=size)
    side = int(32 * size)
    canvas = -torch.ones(2, move.canvas_channels, side, side)  # black background, nothing on the layer
    middle = slice(side // 2 - 2, side // 2 + 2)
    canvas[:, 1:, middle, middle] = 1.0  # a white, opaque 4x4 block in the middle of the layer
    code, times = torch.randn(2, 4), torch.tensor([[0.0, 1.5, 4.0, 9.0]] * 2)
    features = torch.randn(2, 4, 6)
    frames = move(canvas, code, features, times)  # (B, K, C, H, W)
    pos = move.positions(code, features, times)[:, :, 0]  # (B, K, 2) as (x, y) in [-1, 1] units
    assert (pos[:, 1:] - pos[:, :1]).abs().max() > 0.05  # it moves
    mass = (frames[:, :, 0] + 1) / 2  # white = 1
    torch.testing.assert_close(mass.sum(dim=(2, 3)), torch.full((2, 4), 16.0), rtol=1e-4, atol=1e-3)  # moved, not redrawn
    grid = torch.arange(32.0) + 0.5
    centre_x = (mass.sum(dim=2) * grid).sum(-1) / mass.sum(dim=(2, 3))
    centre_y = (mass.sum(dim=3) * grid).sum(-1) / mass.sum(dim=(2, 3))
    torch.testing.assert_close(centre_x, 16 + pos[..., 0] * 16, rtol=0, atol=1e-3)
    torch.testing.assert_close(centre_y, 16 + pos[..., 1] * 16, rtol=0, atol=1e-3)
    # the background is only a smooth backdrop: a sharp dot drawn on it does not come out sharp
    canvas[:, 0, 5, 5] = 1.0
    backdrop = move(canvas, code, features, times)[:, :, 0] - frames[:, :, 0]
    assert 0 < backdrop.max() < 0.2  # drawn sharp, the dot would add 2 (black to white)


@pytest.mark.parametrize("size", [1.0, 0.5])
def test_snapped_layers_are_copied_as_drawn_and_still_learn_where_to_go(size):
    """layer_snap: every frame shows the layer's own pixels (a whole-pixel shift; a fraction of a pixel
    would blend neighbours, blurring the drawing), within half a pixel of the unsnapped place, and the
    motion still gets gradients (straight-through)."""
    from vidgan.models.moving_layers import LayeredMotion

    torch.manual_seed(0)
    move = LayeredMotion(layers=1, channels=1, motion_dim=4, feature_dim=6, size=size, snap=True)
    side = int(32 * size)
    canvas = -torch.ones(2, move.canvas_channels, side, side)
    canvas[:, 1:, 3:9, 4:7] = 1.0  # an opaque white block, columns 4-6 of the layer
    canvas[:, 1, 3:9, 4] = 0.0  # with a grey left edge
    code, times = torch.randn(2, 4), torch.tensor([[0.0, 1.3, 4.7, 9.1]] * 2)
    features = torch.randn(2, 4, 6)
    frames = move(canvas, code, features, times)[:, :, 0]  # (B, K, H, W)
    nearest = torch.stack([(frames - v).abs() for v in (-1.0, 0.0, 1.0)]).min(dim=0).values
    assert nearest.max() < 1e-4  # only the drawn values: nothing blended
    move.snap = False
    assert (move(canvas, code, features, times)[:, :, 0] - frames).abs().max() > 0.1  # sub-pixel shifts blend
    move.snap = True
    whole = (frames > 0.5).sum(dim=(2, 3)) == 12  # the block's white part fully in view
    assert whole.any()
    grid = torch.arange(32.0) + 0.5
    white = (frames > 0.5).float()
    column = (white.sum(dim=2) * grid).sum(-1) / white.sum(dim=(2, 3)).clamp_min(1)  # white columns 5-6: centre 6.0
    x = move.positions(code, features, times)[..., 0, 0]  # the unsnapped centre, [-1, 1] units
    unsnapped = 16 + x * 16 - side / 2 + 6.0
    assert ((column - unsnapped).abs() <= 0.5 + 1e-3)[whole].all()
    frames.square().mean().backward()
    assert move.start.weight.grad.abs().sum() > 0 and move.drift.weight.grad.abs().sum() > 0


def test_layers_start_moving_at_the_pace_of_objects_in_video():
    """Untrained layers drift a few pixels a frame, not across the frame: started at half a frame per
    frame, the drift never slowed to Moving MNIST's 1.8 px in 32 within a 600 s run (README)."""
    from vidgan.models.moving_layers import LayeredMotion

    torch.manual_seed(0)
    move = LayeredMotion(layers=2, channels=1, motion_dim=32, feature_dim=48, size=0.5)
    code = torch.randn(512, 32)
    times = torch.arange(16.0).expand(512, -1)
    line = move.start(code)[:, None] + move.drift(code)[:, None] * times[..., None]  # before the walls
    pixels_per_frame = (line[:, 1:] - line[:, :-1]).unflatten(-1, (2, 2)).norm(dim=-1) * 16  # 32-pixel frame
    assert 0.5 < pixels_per_frame.median() < 4.0


def test_runs_saved_with_the_old_velocity_generate_the_same_motion():
    """Checkpoints from before "drift" hold it as "velocity" with lr_mul 0.1; they load to the same map."""
    from vidgan.models.layers import EqualLinear
    from vidgan.models.moving_layers import LayeredMotion

    torch.manual_seed(0)
    old = EqualLinear(8, 4, lr_mul=0.1)
    with torch.no_grad():
        old.bias.normal_()
    move = LayeredMotion(layers=2, channels=1, motion_dim=8, feature_dim=6, size=0.5)
    state = {k: v for k, v in move.state_dict().items() if not k.startswith("drift.")}
    state |= {"velocity.weight": old.weight.detach(), "velocity.bias": old.bias.detach()}
    move.load_state_dict(state)
    code = torch.randn(5, 8)
    torch.testing.assert_close(move.drift(code), old(code))


def test_own_layer_codes_draw_each_layer_by_itself():
    """With own codes, the second layer's content noise changes the second layer only."""
    torch.manual_seed(0)
    G, _ = build_model(tiny(synthesis="sprites"))
    G.eval()
    z = torch.randn(2, G.z_dim)
    other = z.clone()
    other[:, G.content_dim // 2 : G.content_dim] = torch.randn(2, G.content_dim // 2)  # layer 2's code
    with torch.no_grad():
        G(z)
        first, first_alpha = G.last_drawing[0].unflatten(0, (2, 2)), G.last_mask  # (clip, layer, C + 1, h, w), (clip, layer, h, w)
        # the canvas: the backdrop (the mean of the codes' backdrops), then each layer's colour and alpha
        canvas, other_canvas = (G.draw_layers(G.mapped(G.split_z(v)[0], None)) for v in (z, other))
    assert torch.equal(canvas[:, 1:3], other_canvas[:, 1:3])
    assert (canvas[:, 3:5] - other_canvas[:, 3:5]).abs().max() > 1e-5  # small: DCGAN's initial weights draw faintly
    # supersampled: drawn at the frame's 16x16, each 2x2 block averaged into the 8x8 layer
    with torch.no_grad():
        drawn = G.decoder(G.mapped(z[:, : G.content_dim], None))
    assert drawn.shape[-1] == 16 and first.shape[-1] == 8
    alpha = (torch.nn.functional.avg_pool2d(drawn[:, -1:], 2) + 1) / 2
    torch.testing.assert_close(first_alpha.flatten(0, 1)[:, None], alpha)
    with pytest.raises(ValueError, match="layer_size"):
        build_model(tiny(synthesis="layers", layer_size=0.3))


def test_unknown_synthesis_is_refused():
    with pytest.raises(ValueError, match="synthesis"):
        build_model(tiny(synthesis="pixels"))


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


def test_content_std_sees_one_drawing_in_many_places():
    """model.content_std: D's extra input is small when the clips of a group show one drawing at
    eight places and large when they show eight drawings at the same eight places."""
    torch.manual_seed(0)
    _, D = build_model(tiny(content_std=True, minibatch_std=True, resolution=32, fuse_resolution=8))
    seen = {}
    D.final_conv.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    pattern = torch.zeros(8, 1, 3, 32, 32)
    pattern[..., 12:20, 12:20] = torch.rand(8, 1, 1, 8, 8) * 2 - 1  # 8 different drawings
    shifts = [(-6, -6), (-6, 5), (5, -6), (5, 5), (0, 3), (3, 0), (-3, -2), (2, -4)]
    same = torch.stack([pattern[0].roll(s, dims=(2, 3)) for s in shifts])  # one drawing, 8 places
    different = torch.stack([pattern[i].roll(s, dims=(2, 3)) for i, s in enumerate(shifts)])
    times = torch.tensor([[0.0, 2.0, 5.0]] * 8)
    with torch.no_grad():
        D(same, times=times)
        one = seen["x"][:, -1, 0, 0].clone()
        D(different, times=times)
        many = seen["x"][:, -1, 0, 0].clone()
    assert (one < 0.5 * many).all(), (one, many)


@pytest.mark.parametrize("fuse", [4, 8, 16])
def test_discriminator_fuses_frames_at_any_resolution(fuse):
    _, D = build_model(tiny(fuse_resolution=fuse))
    assert D(torch.randn(2, 1, 3, 16, 16), times=torch.tensor([[0.0, 2.0, 5.0]] * 2)).shape == (2,)


@pytest.mark.parametrize("synthesis", SYNTHESIS)
@pytest.mark.parametrize("kind", ["class", "text", "first-frame"])
def test_conditions(kind, synthesis):
    torch.manual_seed(0)
    G, D = build_model(tiny(condition=kind, num_classes=3, text_dim=6, synthesis=synthesis))
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
    original = ctvgan.Generator.render
    monkeypatch.setattr(ctvgan.Generator, "render", lambda self, w, m: rendered.append(len(w)) or original(self, w, m))
    train(tiny_config(mnist_data, **CT, **{"train.steps": 2, "train.num_samples": 2}), tmp_path / "run", progress=False, log=lambda s: None)
    batch = 8  # tiny preset
    # per step: fakes for D (batch x 3 frames) and for G (batch x 3); grids render 2 clips x 8 frames,
    # the EMA generator's standing statistics 16 clips x 8 frames
    assert rendered.count(batch * 3) == 4 and all(n in (batch * 3, 2 * 8, 16 * 8) for n in rendered)


@pytest.mark.parametrize("synthesis", ["dcgan", "layers", "sprites"])
def test_tiny_ctvgan_moves_toward_the_data_and_resumes_exactly(mnist_data, tmp_path, synthesis):
    from helpers import tiny_config
    from vidgan.data.clips import ClipDataset
    from vidgan.metrics.pixel_stats import pixel_statistics_distance
    from vidgan.pipeline import VideoPipeline
    from vidgan.run import Run, load_weights
    from vidgan.training.loop import train

    real = ClipDataset(mnist_data).get_batch(range(32))[0].numpy()
    quiet = {"progress": False, "log": lambda s: None}
    extra = {**CT, "model.synthesis": synthesis, "loss.penalty": "r1", "loss.penalty_every": 2, "loss.augment": "translation"}
    if synthesis == "sprites":  # with the mode-seeking term too
        extra |= {f"model.{k}": v for k, v in SPRITES.items()} | {"loss.mode_seeking": 0.05}

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


def test_the_mode_seeking_term_keeps_different_noise_drawing_different_layers(mnist_data, tmp_path):
    """loss.mode_seeking acts on what the layered generator draws (not on where it moves it): after the
    same tiny run, the drawings of different noises differ more with the term than without."""
    from helpers import tiny_config
    from vidgan.pipeline import VideoPipeline
    from vidgan.training.loop import train

    spread = {}
    for weight in (0.0, 1.0):
        run = tmp_path / f"ms{weight}"
        overrides = {**CT, "model.synthesis": "layers", "loss.mode_seeking": weight, "train.steps": 30}
        train(tiny_config(mnist_data, **overrides), run, progress=False, log=lambda s: None)
        pipe = VideoPipeline.from_pretrained(run, ema=False)
        pipe(n=16, seed=0)
        drawn = pipe.generator.last_drawing[0].flatten(1)
        spread[weight] = torch.cdist(drawn, drawn, p=1).mean().item() / drawn.shape[1]
    assert spread[1.0] > 1.5 * spread[0.0], spread


def test_mask_l1_makes_the_layers_transparent_where_nothing_is_drawn(mnist_data, tmp_path):
    """loss.mask_l1 on the layered synthesis: after the same tiny run, the layers' alpha covers less with
    the prior than without; on a model that draws no mask the setting is refused, not ignored."""
    from helpers import tiny_config
    from vidgan.pipeline import VideoPipeline
    from vidgan.training.loop import train

    cover = {}
    for weight in (0.0, 5.0):
        run = tmp_path / f"m{weight}"
        overrides = {**CT, "model.synthesis": "layers", "loss.mask_l1": weight, "train.steps": 30}
        train(tiny_config(mnist_data, **overrides), run, progress=False, log=lambda s: None)
        pipe = VideoPipeline.from_pretrained(run, ema=False)
        pipe(n=8, seed=0)
        cover[weight] = pipe.generator.last_mask.mean().item()
    assert cover[5.0] < 0.7 * cover[0.0], cover
    with pytest.raises(ValueError, match="mask_l1 is set but ctvgan with synthesis dcgan draws no mask"):
        train(tiny_config(mnist_data, **CT, **{"loss.mask_l1": 0.1}), tmp_path / "dcgan", progress=False, log=lambda s: None)
