"""Speed settings: precision choice, bf16/fp16 steps, accumulation, compile fallback."""

import copy

import pytest
import torch

from helpers import tiny_config
from vidgan.config import TrainConfig
from vidgan.data.clips import ClipDataset
from vidgan.metrics.pixel_stats import pixel_statistics_distance
from vidgan.models.registry import build_model
from vidgan.pipeline import VideoPipeline
from vidgan.presets import load_config
from vidgan.run import Run, load_weights
from vidgan.training import speed
from vidgan.training.gan import GANStep, StepSettings
from vidgan.training.loop import train
from vidgan.training.speed import SpeedPlan, StepPrecision, resolve_speed

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def _quiet(lines=None):
    return (lambda s: None) if lines is None else lines.append


def test_auto_precision_per_device(monkeypatch):
    monkeypatch.setattr(speed, "cpu_has_bf16", lambda: True)
    plan = resolve_speed(TrainConfig(), CPU, width=512)
    assert (plan.precision, plan.channels_last, plan.matmul_convs) == ("bf16", True, True)
    assert "bf16" in plan.describe() and "channels-last-3d on" in plan.describe()
    assert resolve_speed(TrainConfig(), CPU, width=32).precision == "fp32"  # too narrow to pay
    monkeypatch.setattr(speed, "cpu_has_bf16", lambda: False)
    assert resolve_speed(TrainConfig(), CPU, width=512).precision == "fp32"
    # GPUs: bf16 from Ampere on, fp16 (with a GradScaler) before
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert speed.auto_precision(torch.device("cuda"), 512)[0] == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert speed.auto_precision(torch.device("cuda"), 512)[0] == "fp16"
    # explicit choices and their errors
    assert resolve_speed(TrainConfig(precision="bf16"), CPU).precision == "bf16"
    assert resolve_speed(TrainConfig(precision="fp32", channels_last=True), CPU).channels_last
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        resolve_speed(TrainConfig(precision="fp16"), CPU)
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
        resolve_speed(TrainConfig(precision="fp8"), CPU)


def _tiny_models():
    cfg = load_config("tiny").with_data_shape(frames=4, resolution=16, channels=1)
    torch.manual_seed(0)
    G, D = build_model(cfg.model)
    return cfg, G, D


def test_accumulated_micro_batches_give_the_whole_batch_update():
    """accum 2 x 4 clips = one batch of 8 for layers without batch statistics (VideoGAN's D).

    G is put in eval mode: its BatchNorm then normalises with running statistics, the same for any
    split. In training mode each micro-batch is normalised by its own statistics, so accumulation
    changes G's gradients slightly (the usual caveat of BatchNorm with small micro-batches).
    """
    cfg, G0, D0 = _tiny_models()
    g = torch.Generator().manual_seed(1)
    real = torch.rand(8, 1, 4, 16, 16, generator=g) * 2 - 1
    z_d, z_g = torch.randn(8, G0.z_dim, generator=g), torch.randn(8, G0.z_dim, generator=g)
    results = []
    for accum in (1, 2):
        G, D = copy.deepcopy(G0).eval(), copy.deepcopy(D0)
        opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=0.1), torch.optim.SGD(D.parameters(), lr=0.1)
        settings = StepSettings.from_config(cfg.loss, 0)
        losses = GANStep(G, D, opt_g, opt_d, settings, accum=accum)(real, z_d, z_g)
        results.append((losses, [p.grad.clone() for p in [*D.parameters(), *G.parameters()]], [p.detach().clone() for p in G.parameters()]))
    (one, grads_one, g_one), (two, grads_two, g_two) = results
    assert torch.allclose(one[0], two[0], atol=1e-6) and torch.allclose(one[1], two[1], atol=1e-6)
    assert torch.allclose(one[2], two[2], atol=1e-5)  # real logits, all 8
    for a, b in zip(grads_one, grads_two):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    assert any((a != b).any() for a, b in zip(g_one, [p for p in G0.parameters()]))  # G did move
    with pytest.raises(ValueError, match="micro-batches"):
        GANStep(G, D, opt_g, opt_d, settings, accum=4)(real[:6], z_d[:6], z_g[:6])


@pytest.mark.parametrize("penalty", ["r1", "gp"])
def test_reduced_precision_steps_keep_losses_and_penalties_finite(penalty):
    cfg, G, D = _tiny_models()
    cfg.loss.penalty = penalty
    for precision in ("bf16", "fp16"):  # fp16 runs on CPU here only to exercise the GradScaler path
        plan = SpeedPlan(CPU, precision, "test", channels_last=True, matmul_convs=precision == "bf16", compile=False, fused_adam=True)
        speed.to_channels_last(G)
        speed.to_channels_last(D)
        prec = StepPrecision(plan)
        opt_g, opt_d = speed.make_adam(G.parameters(), 1e-4, (0.5, 0.999), plan), speed.make_adam(D.parameters(), 1e-4, (0.5, 0.999), plan)
        settings = StepSettings.from_config(cfg.loss, 0)
        real = (torch.rand(4, 1, 4, 16, 16) * 2 - 1).contiguous(memory_format=torch.channels_last_3d)
        gan_step = GANStep(G, D, opt_g, opt_d, settings, precision=prec)
        for step in range(2):
            loss_d, loss_g, real_logits, _ = gan_step(real, torch.randn(4, G.z_dim), torch.randn(4, G.z_dim), step=step)
            assert loss_d.dtype == loss_g.dtype == real_logits.dtype == torch.float32  # losses computed in fp32
            assert torch.isfinite(loss_d) and torch.isfinite(loss_g)
        assert all(p.dtype == torch.float32 for p in G.parameters())  # master weights stay fp32
        if precision == "fp16":
            assert set(prec.state_dict()) == {"scaler_d", "scaler_g"}


@pytest.mark.slow  # an end-to-end learning test: 150 steps
def test_tiny_videogan_moves_toward_the_data_in_bf16(mnist_data, tmp_path):
    real = ClipDataset(mnist_data).get_batch(range(32))[0].numpy()
    distances, lines = [], []
    for steps in (1, 150):
        run = tmp_path / f"r{steps}"
        train(
            tiny_config(mnist_data, **{"train.steps": steps, "train.precision": "bf16", "train.log_every": 50}),
            run,
            progress=False,
            log=_quiet(lines),
        )
        distances.append(pixel_statistics_distance(VideoPipeline.from_pretrained(run)(n=32, seed=1), real))
    assert any(ln.startswith("speed: cpu, bf16") for ln in lines)
    assert distances[1] < 0.5 * distances[0], distances


def test_bf16_channels_last_run_resumes_exactly(mnist_data, tmp_path):
    """Fused Adam with channels-last weights: the resumed optimizer state must keep the weights' layout."""
    extra = {
        "train.precision": "bf16",
        "loss.augment": "color,translation,cutout",
        "loss.penalty": "r1",
        "loss.penalty_every": 2,
        "train.log_every": 2,
    }
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_config(mnist_data, **{"train.steps": 6, "train.checkpoint_every": 3, **extra}), full, progress=False, log=_quiet())
    train(tiny_config(mnist_data, **{"train.steps": 3, **extra}), part, progress=False, log=_quiet())
    train(tiny_config(mnist_data, **{"train.steps": 6, **extra}), part, resume=True, progress=False, log=_quiet())
    a, b = Run(full).read_log(), Run(part).read_log()
    assert [r["step"] for r in b] == [2, 3, 4, 6]  # every 2nd step, and the last step of each run
    by_step = {r["step"]: r for r in b}
    assert [r["step"] for r in a] == [2, 4, 6]
    for ra in a:
        rb = by_step[ra["step"]]
        assert ra["loss_d"] == pytest.approx(rb["loss_d"], abs=1e-6) and ra["loss_g"] == pytest.approx(rb["loss_g"], abs=1e-6)
    wa = load_weights(Run(full).latest(), "generator")
    wb = load_weights(Run(part).latest(), "generator")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_grad_accum_run_and_batch_check(mnist_data, tmp_path):
    lines = []
    result = train(tiny_config(mnist_data, **{"train.steps": 2, "train.grad_accum": 2}), tmp_path / "a", progress=False, log=_quiet(lines))
    assert result.step == 2 and any("2 micro-batches of 4" in ln for ln in lines)
    with pytest.raises(ValueError, match="grad_accum"):
        train(tiny_config(mnist_data, **{"train.steps": 2, "train.grad_accum": 3}), tmp_path / "b", progress=False, log=_quiet())


def test_compile_failure_warns_once_and_trains_eager(mnist_data, tmp_path, monkeypatch):
    def broken_compile(module, *args, **kwargs):
        def run(*a, **k):
            raise RuntimeError("backend exploded\nlong traceback")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    lines = []
    result = train(tiny_config(mnist_data, **{"train.steps": 3, "train.compile": True}), tmp_path / "c", progress=False, log=_quiet(lines))
    assert result.step == 3 and all(r["loss_d"] == r["loss_d"] for r in Run(tmp_path / "c").read_log())
    warnings = [ln for ln in lines if "torch.compile failed" in ln]
    assert len(warnings) == 1 and "backend exploded" in warnings[0] and "eager" in warnings[0]
    assert any("compile on" in ln for ln in lines)
