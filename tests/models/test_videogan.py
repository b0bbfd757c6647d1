import pytest
import torch

from vidgan.config import VideoGANConfig, model_config
from vidgan.models.layers import count_parameters
from vidgan.models.registry import build_model, model_names
from vidgan.models.videogan import video_pyramid
from vidgan.presets import load_config, preset_names


@pytest.mark.parametrize("resolution,frames", [(32, 16), (64, 32), (64, 16), (32, 8), (64, 20), (16, 4)])
def test_output_shape_and_range(resolution, frames):
    cfg = VideoGANConfig(resolution=resolution, frames=frames, channels=3, z_dim=8, g_channels=16, d_channels=4, max_channels=16)
    G, D = build_model(cfg)
    video = G(torch.randn(3, 8))
    assert video.shape == (3, 3, frames, resolution, resolution)
    assert video.min() >= -1 and video.max() <= 1
    assert D(video).shape == (3,)


def test_paper_size_at_64x64x32():
    # Vondrick et al.'s network: 512-256-128-64 generator, 64-128-256-512 discriminator.
    G, D = build_model(VideoGANConfig(resolution=64, frames=32, channels=3))
    assert round(count_parameters(G) / 1e6, 1) == 12.7
    assert round(count_parameters(D) / 1e6, 1) == 11.0


def test_gradients_reach_every_parameter():
    cfg = load_config("tiny").model.model_copy(update={"resolution": 32, "frames": 8, "channels": 1})
    G, D = build_model(cfg)
    (D(G(torch.randn(4, cfg.z_dim))).sum()).backward()
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_spectral_norm_bounds_discriminator_layers():
    cfg = VideoGANConfig(resolution=32, frames=8, channels=1, d_channels=8, spectral_norm=True)
    _, D = build_model(cfg)
    D.train()
    x = torch.randn(2, 1, 8, 32, 32)
    for _ in range(20):  # power iterations converge
        D(x)
    w = D.convs[1].weight.flatten(1)
    assert torch.linalg.matrix_norm(w.detach(), ord=2).item() == pytest.approx(1.0, rel=0.05)


def test_time_pyramid():
    assert video_pyramid(VideoGANConfig(resolution=64, frames=32)) == (2, [True] * 4)
    assert video_pyramid(VideoGANConfig(resolution=64, frames=20)) == (5, [False, False, True, True])
    with pytest.raises(ValueError, match="power of two"):
        video_pyramid(VideoGANConfig(resolution=48, frames=16))


def test_registry_and_presets():
    assert "videogan" in model_names()
    with pytest.raises(ValueError, match="available: .*videogan"):
        build_model(model_config(name="nope"))
    assert {"tiny", "small", "64px", "128px"} <= set(preset_names())
    for name in preset_names():
        build_model(load_config(name).model.model_copy(update={"resolution": 32, "frames": 8}))


def test_minibatch_std_sees_collapse_and_never_mixes_the_halves():
    from vidgan.models.layers import minibatch_std

    torch.manual_seed(0)
    varied, collapsed = torch.randn(4, 3, 2, 4, 4), torch.randn(1, 3, 2, 4, 4).repeat(4, 1, 1, 1, 1)
    out = minibatch_std(torch.cat([varied, collapsed]))  # the trainer's [real; fake] call, 4 + 4
    assert out.shape == (8, 4, 2, 4, 4) and torch.equal(out[:, :3], torch.cat([varied, collapsed]))
    extra = out[:, 3].flatten(1)
    assert torch.all(extra == extra[:, :1])  # one number per sample, broadcast over positions
    assert torch.all(extra[:4] > 0.5) and torch.all(extra[4:] < 1e-3)  # the collapsed half shows zero spread
    # 2 + 2: groups of two, again never straddling the middle
    pair = minibatch_std(torch.cat([varied[:2], collapsed[:2]]))[:, 3, 0, 0, 0]
    assert pair[0] == pair[1] and pair[2] < 1e-3 < pair[0]


def test_minibatch_std_discriminator_trains_end_to_end():
    cfg = load_config("tiny").model.model_copy(update={"resolution": 16, "frames": 4, "channels": 3, "minibatch_std": True})
    G, D = build_model(cfg)
    (D(G(torch.randn(4, cfg.z_dim))).sum()).backward()
    assert D.head.weight.shape[1] == D.convs[-1].weight.shape[0] + 1
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
