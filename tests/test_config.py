"""Presets: per-model sections, dotted overrides, and what a run's config.json holds."""

from __future__ import annotations

import json

import pytest

from vidgan.config import RunConfig, load_config, preset_names, with_overrides


def test_a_preset_section_for_another_model_applies_only_to_that_model(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text(
        "model: {name: videogan, g_channels: 64}\nloss: {name: hinge}\n"
        "models:\n  ctvgan: {model: {g_channels: 32, w_dim: 16}, loss: {name: nonsat, penalty: r1}}\n"
    )
    base = load_config(str(preset))
    assert (base.model.name, base.model.g_channels, base.loss.name, base.loss.penalty) == ("videogan", 64, "hinge", "none")
    ct = load_config(str(preset), {"model.name": "ctvgan"})
    assert (ct.model.g_channels, ct.model.w_dim, ct.loss.name, ct.loss.penalty) == (32, 16, "nonsat", "r1")
    # explicit overrides win over the model's section
    assert load_config(str(preset), {"model.name": "ctvgan", "loss.name": "lsgan"}).loss.name == "lsgan"


def test_every_builtin_preset_loads_for_every_model():
    from vidgan.models.registry import model_names

    for preset in preset_names():
        for name in model_names():
            cfg = load_config(preset, {"model.name": name})
            assert cfg.model.name == name


def test_with_overrides_validates():
    cfg = load_config("tiny")
    assert with_overrides(cfg, {"train.steps": 7, "model.name": "tgan"}).train.steps == 7
    with pytest.raises(ValueError):
        with_overrides(cfg, {"train.stepz": 7})


def test_gan_runs_do_not_carry_the_two_stage_section(tmp_path):
    load_config("small", {"model.name": "videogan"}).save(tmp_path / "gan.json")
    load_config("small", {"model.name": "vqvae"}).save(tmp_path / "vq.json")
    assert "vq" not in json.loads((tmp_path / "gan.json").read_text())
    assert json.loads((tmp_path / "vq.json").read_text())["vq"]["codebook_size"] == 512
    assert RunConfig.load(tmp_path / "gan.json").vq == RunConfig().vq  # still loads, with the defaults
