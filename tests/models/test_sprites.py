"""The sprites model: objects drawn once per clip and moved over a plain, static background."""

from __future__ import annotations

import pytest
import torch

from vidgan.models.registry import build_model
from vidgan.models.sprites import LayeredMotion, fold

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides):
    from vidgan.config import model_config

    base = dict(name="sprites", z_dim=16, w_dim=32, g_channels=32, d_channels=8, max_channels=32, frames=8, resolution=16, channels=1,
                motion_dim=8, motion_spacing=3.0, sparse_frames=3, fuse_resolution=8)  # fmt: skip
    return model_config(**(base | overrides))


def test_fold_bounces_a_straight_line_between_its_walls():
    x = torch.linspace(-5, 5, 1001)
    y = fold(x, torch.tensor(0.5))
    assert y.min() >= -0.501 and y.max() <= 0.501
    torch.testing.assert_close(fold(torch.tensor([0.2, 0.7, 1.6]), torch.tensor(0.5)), torch.tensor([0.2, 0.3, -0.4]), atol=5e-3, rtol=0)
    speed = (y[1:] - y[:-1]).abs()
    assert speed.max() < 0.0101 and (speed > 0.0099).float().mean() > 0.97  # the same speed but at the turns


@pytest.mark.parametrize("size", [1.0, 0.5])
def test_layers_move_what_was_drawn_without_redrawing_it(size):
    """A frame is the clip's drawing translated to where its layer is at time t
    (size 0.5: a sprite drawn at 16x16 and placed, pixel for pixel, in a 32x32 frame)."""
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
    """snap: every frame shows the layer's own pixels (a whole-pixel shift; a fraction of a pixel
    would blend neighbours, blurring the drawing), within half a pixel of the unsnapped place, and the
    motion still gets gradients (straight-through)."""
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
    frame, the drift never slowed to Moving MNIST's 1.8 px in 32 within a CPU run."""
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


def test_each_object_is_drawn_by_itself_from_its_own_code():
    """The second object's content noise changes the second object only; objects are drawn at their size."""
    torch.manual_seed(0)
    G, _ = build_model(tiny())
    G.eval()
    z = torch.randn(2, G.z_dim)
    other = z.clone()
    other[:, G.content_dim // 2 : G.content_dim] = torch.randn(2, G.content_dim // 2)  # object 2's code
    with torch.no_grad():
        _, extra = G(z, extras=True)
        # the canvas: the backdrop (the mean of the codes' backdrops), then each object's colour and alpha
        canvas, other_canvas = (G.canvas(G.mapped(G.split_z(v)[0], None)) for v in (z, other))
    assert torch.equal(canvas[:, 1:3], other_canvas[:, 1:3])
    assert (canvas[:, 3:5] - other_canvas[:, 3:5]).abs().max() > 1e-5  # small: DCGAN's initial weights draw faintly
    drawing, noise = extra["drawing"]
    assert drawing.shape == (2 * 2, 2, 8, 8) and noise.shape == (2 * 2, 16)  # (clip x object, colour + alpha, h, w)
    torch.testing.assert_close(extra["mask"], (canvas[:, [2, 4]] + 1) / 2)
    with pytest.raises(ValueError, match="layer_size"):
        build_model(tiny(layer_size=0.3))


def test_the_generator_keeps_nothing_of_a_forward_pass_on_itself():
    """Extra outputs come back from the call; the module holds no tensors of the last pass (so it copies)."""
    import copy

    G, _ = build_model(tiny())
    video, extra = G(torch.randn(2, G.z_dim), extras=True)
    assert set(extra) == set(G.extra_outputs) and video.requires_grad
    assert not any(isinstance(v, torch.Tensor) for v in vars(G).values())
    copy.deepcopy(G)


# ----------------------------------------------------------------------------- training through the loop

SP = {"model.name": "sprites", "model.motion_dim": 8, "model.w_dim": 32, "model.z_dim": 16, "model.sparse_frames": 3}


def _extras_after_training(data, run, n: int, **overrides) -> dict:
    """A tiny sprites run of 30 steps with `overrides`; its raw generator's extra outputs for n fixed noises."""
    from helpers import tiny_config
    from vidgan.pipeline import VideoPipeline
    from vidgan.training.loop import train

    train(tiny_config(data, **SP, **{"train.steps": 30}, **overrides), run, progress=False, log=lambda s: None)
    G = VideoPipeline.from_pretrained(run, ema=False).generator
    with torch.no_grad():
        return G(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(0)), extras=True)[1]


@pytest.mark.slow  # an end-to-end learning test: two runs of 30 steps
def test_the_mode_seeking_term_keeps_different_noise_drawing_different_layers(mnist_data, tmp_path):
    """loss.mode_seeking acts on what the sprites generator draws (not on where it moves it): after the
    same tiny run, the drawings of different noises differ more with the term than without."""
    spread = {}
    for weight in (0.0, 1.0):
        drawn = _extras_after_training(mnist_data, tmp_path / f"ms{weight}", 16, **{"loss.mode_seeking": weight})["drawing"][0].flatten(1)
        spread[weight] = torch.cdist(drawn, drawn, p=1).mean().item() / drawn.shape[1]
    assert spread[1.0] > 1.5 * spread[0.0], spread


@pytest.mark.slow  # an end-to-end learning test: two runs of 30 steps
def test_mask_l1_makes_the_layers_transparent_where_nothing_is_drawn(mnist_data, tmp_path):
    """loss.mask_l1 on the sprites model: after the same tiny run, the layers' alpha covers less with
    the prior than without; on a model that draws no mask the setting is refused, not ignored."""
    from helpers import tiny_config
    from vidgan.training.loop import train

    cover = {weight: _extras_after_training(mnist_data, tmp_path / f"m{weight}", 8, **{"loss.mask_l1": weight})["mask"].mean().item()
             for weight in (0.0, 5.0)}  # fmt: skip
    assert cover[5.0] < 0.7 * cover[0.0], cover
    with pytest.raises(ValueError, match="mask_l1 is set but ctvgan draws no mask"):
        cfg = tiny_config(mnist_data, **(SP | {"model.name": "ctvgan", "loss.mask_l1": 0.1}))
        train(cfg, tmp_path / "ct", progress=False, log=lambda s: None)
