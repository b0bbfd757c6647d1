"""DiffAugment for video: one transform per clip, the same on every frame, differentiable and seeded."""

import pytest
import torch

from vidgan.training.augment import AUGMENTATIONS, AUTO_POLICY, SMALL_DATASET_CLIPS, augment, resolve_policy

ALL = "color,translation,cutout"
POLICIES = ["color", "translation", "cutout", ALL]


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def moving_clips(B=6, C=3, T=4, H=16, W=16, seed=0):
    """Random frames: every frame differs, so any mixing between frames would show."""
    return torch.rand((B, C, T, H, W), generator=seeded(seed)) * 2 - 1


def still_clips(B=6, C=3, T=4, H=16, W=16, seed=0):
    return moving_clips(B, C, 1, H, W, seed).expand(B, C, T, H, W).clone()


@pytest.mark.parametrize("policy", POLICIES)
def test_shape_finite_and_same_transform_on_every_frame(policy):
    x = still_clips()
    out = augment(x, policy, seeded())
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(out, out[:, :, :1].expand_as(out))  # still clips stay still
    gray = augment(still_clips(C=1), policy, seeded())
    assert gray.shape == (6, 1, 4, 16, 16) and torch.equal(gray, gray[:, :, :1].expand_as(gray))


@pytest.mark.parametrize("policy", ["translation", "cutout", "translation,cutout"])
def test_spatial_transforms_act_frame_by_frame(policy):
    # Draws depend on the batch and frame size only, so one frame under the same seed gets the clip's transform.
    x = moving_clips()
    out = augment(x, policy, seeded(3))
    for t in range(x.shape[2]):
        assert torch.equal(out[:, :, t : t + 1], augment(x[:, :, t : t + 1], policy, seeded(3)))


def shifted(frame, dy, dx):
    """frame (C, H, W) moved down by dy and right by dx, zero filled."""
    out = torch.zeros_like(frame)
    H, W = frame.shape[-2:]
    out[:, max(dy, 0) : H + min(dy, 0), max(dx, 0) : W + min(dx, 0)] = frame[:, max(-dy, 0) : H - max(dy, 0), max(-dx, 0) : W - max(dx, 0)]
    return out


def test_translation_is_one_whole_pixel_shift_per_clip_within_an_eighth():
    x = moving_clips(B=8)
    out = augment(x, "translation", seeded(1))
    shifts = []
    for b in range(8):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(out[b, :, 0], shifted(x[b, :, 0], dy, dx))]
        assert len(found) == 1  # 16 / 8 = 2 pixels at most
        dy, dx = found[0]
        for t in range(1, 4):
            assert torch.equal(out[b, :, t], shifted(x[b, :, t], dy, dx))
        shifts.append(found[0])
    assert len(set(shifts)) > 1


def test_cutout_zeroes_one_half_size_square_per_clip():
    x = torch.ones(8, 1, 3, 16, 16)
    out = augment(x, "cutout", seeded(2))
    holes = out[:, 0, 0] == 0
    corners = []
    for b in range(8):
        rows, cols = holes[b].any(1).nonzero().flatten(), holes[b].any(0).nonzero().flatten()
        assert len(rows) <= 8 and len(cols) <= 8 and 0 < holes[b].sum() == len(rows) * len(cols)  # a rectangle
        assert torch.equal(
            holes[b][rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], torch.ones(len(rows), len(cols), dtype=torch.bool)
        )
        corners.append((rows.min().item(), cols.min().item()))
    assert len(set(corners)) > 1
    assert set(out.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("policy", POLICIES)
def test_clips_get_different_draws_and_a_seed_fixes_them(policy):
    x = still_clips(B=8)
    x = x[:1].expand_as(x).clone()  # eight copies of one clip
    out = augment(x, policy, seeded(5))
    assert len({tuple(clip.flatten().tolist()) for clip in out}) > 1
    assert torch.equal(out, augment(x, policy, seeded(5)))
    assert not torch.equal(out, augment(x, policy, seeded(6)))


@pytest.mark.parametrize("policy", POLICIES)
def test_gradients_flow_to_the_input(policy):
    x = moving_clips().requires_grad_(True)
    augment(x, policy, seeded()).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_color_ranges():
    # Brightness is at most +-0.5 on a constant clip (saturation and contrast leave a constant alone).
    out = augment(torch.zeros(64, 3, 2, 4, 4), "color", seeded())
    assert out.abs().max() <= 0.5 and out.std() > 0.1
    # Contrast scales deviations from the clip mean by 0.5..1.5; saturation by 0..2 on colour; so by at most 3.
    x = moving_clips(B=32)
    out = augment(x, "color", seeded())
    dev_in = (x - x.mean(dim=(1, 2, 3, 4), keepdim=True)).abs().amax(dim=(1, 2, 3, 4))
    dev_out = (out - out.mean(dim=(1, 2, 3, 4), keepdim=True)).abs().amax(dim=(1, 2, 3, 4))
    assert (dev_out <= 3 * dev_in + 1e-5).all()


def test_empty_and_unknown_policies():
    x = moving_clips()
    assert augment(x, "") is x
    assert set(AUGMENTATIONS) == {"color", "translation", "cutout"}
    with pytest.raises(ValueError, match="unknown augmentation 'flip'; available: color, translation, cutout"):
        augment(x, "color,flip")
    out = augment(x)  # default policy, global RNG
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_auto_policy_augments_small_datasets_only():
    assert resolve_policy("auto", 124) == AUTO_POLICY == ALL
    assert resolve_policy("auto", SMALL_DATASET_CLIPS - 1) == ALL
    assert resolve_policy("auto", SMALL_DATASET_CLIPS) == ""
    assert resolve_policy("translation", 10) == "translation" and resolve_policy("", 10) == ""  # named policies as given
    with pytest.raises(ValueError, match="training clips"):
        resolve_policy("auto", None)


@pytest.mark.usefixtures("one_thread")
def test_a_run_with_auto_augment_uses_the_policy_its_data_size_picks(mnist_data, tmp_path, monkeypatch):
    from helpers import tiny_config
    from vidgan.training import augment as augment_module
    from vidgan.training.gan import StepSettings
    from vidgan.training.loop import train

    used = []
    original = StepSettings.aug
    monkeypatch.setattr(StepSettings, "aug", lambda self, x: used.append(self.augment) or original(self, x))
    for limit, expected in ((10**6, ALL), (1, "none")):  # mnist_data is far below 10**6 clips and above 1
        monkeypatch.setattr(augment_module, "SMALL_DATASET_CLIPS", limit)
        lines, used[:] = [], []
        train(
            tiny_config(mnist_data, **{"train.steps": 1, "loss.augment": "auto"}), tmp_path / str(limit), progress=False, log=lines.append
        )
        assert f"augment: auto -> {expected} (" in "\n".join(lines)
        assert used and set(used) == {"" if expected == "none" else ALL}  # what the step applied
