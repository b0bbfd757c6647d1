"""Settings: one class per model, presets with per-model sections, recipes, the order they apply in,
what a run's config.json holds, and what is refused instead of ignored."""

from __future__ import annotations

import json
import re

import pytest

from vidgan.config import DATA_FIELDS, MODEL_CONFIGS, model_settings
from vidgan.config_upgrade import load_run_config
from vidgan.presets import apply_settings, load_config, preset_names, recipe_names, resolve_config, with_overrides


def test_a_preset_section_for_another_model_applies_only_to_that_model(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text(
        "model: {name: videogan, g_channels: 64}\nloss: {name: hinge}\ntrain: {steps: 9}\n"
        "models:\n  ctvgan: {model: {g_channels: 32, w_dim: 16}, loss: {name: nonsat, penalty: r1}, train: {lr_g: 0.001}}\n"
    )
    base = load_config(str(preset))
    assert (base.model.name, base.model.g_channels, base.loss.name, base.loss.penalty) == ("videogan", 64, "hinge", "none")
    ct = resolve_config(str(preset), model="ctvgan")
    # the entry's model and loss replace the top level's; its train adds to the top level's
    assert (ct.model.g_channels, ct.model.w_dim, ct.loss.name, ct.loss.penalty) == (32, 16, "nonsat", "r1")
    assert (ct.train.steps, ct.train.lr_g) == (9, 0.001)
    tg = resolve_config(str(preset), model="tgan")  # no entry: that model's own defaults, not videogan's widths
    assert (tg.model.g_channels, tg.loss.name) == (MODEL_CONFIGS["tgan"]().g_channels, "nonsat")
    # the command's own options win over the model's section
    assert resolve_config(str(preset), model="ctvgan", overrides={"loss.name": "lsgan"}).loss.name == "lsgan"


def test_every_builtin_preset_loads_for_every_model():
    from vidgan.models.registry import model_names

    assert set(model_names()) == set(MODEL_CONFIGS)
    for preset in preset_names():
        for name in model_names():
            assert resolve_config(preset, model=name).model.name == name


def test_the_order_preset_recipe_options_then_set(tmp_path):
    """Later wins: preset < model section < recipe < the command's options < --set."""
    cfg = resolve_config(recipe="sprites")
    assert (cfg.model.name, cfg.model.d_channels, cfg.train.lr_g, cfg.train.batch_size) == ("sprites", 32, 0.001, 16)
    assert resolve_config(recipe="sprites", overrides={"train.lr_g": 0.5}).train.lr_g == 0.5
    both = resolve_config(recipe="sprites", overrides={"train.lr_g": 0.5}, settings=["train.lr_g=0.25", "model.layers=3"])
    assert (both.train.lr_g, both.model.layers) == (0.25, 3)
    assert resolve_config("tiny", recipe="sprites").model.g_channels == 32  # a preset given instead of the recipe's base
    with pytest.raises(ValueError, match="recipe sprites is for --model sprites, not tgan"):
        resolve_config(recipe="sprites", model="tgan")
    with pytest.raises(ValueError, match="unknown recipe 'nope'; recipes: sprites"):
        resolve_config(recipe="nope")
    assert "sprites" in recipe_names()
    # --set model.name chooses the model's section as --model does
    assert resolve_config("small", settings=["model.name=videogan"]) == resolve_config("small", model="videogan")


def test_a_setting_the_model_does_not_have_is_refused_naming_its_settings():
    with pytest.raises(ValueError, match=r"model.motion_spacing: videogan has no setting 'motion_spacing'; its settings: name, "):
        resolve_config("small", model="videogan", settings=["model.motion_spacing=8"])
    with pytest.raises(ValueError, match="model.layers: ctvgan has no setting 'layers'"):
        apply_settings(load_config("small"), ["model.layers=3"])
    with pytest.raises(ValueError, match="settings: train.stepz: train has no setting .stepz.; it has batch_size"):
        with_overrides(load_config("tiny"), {"train.stepz": 7})
    with pytest.raises(ValueError, match="unknown model 'nope'; available: ctvgan, mocogan"):
        resolve_config("tiny", model="nope")
    with pytest.raises(ValueError, match="vq: settings of the two-stage models"):
        resolve_config("small", model="ctvgan", settings=["vq.width=8"])
    assert apply_settings(load_config("small"), ["model.motion_spacing=8"]).model.motion_spacing == 8.0


@pytest.mark.parametrize("key, value", [("frames", 32), ("resolution", 128), ("channels", 1), ("fps", 30.0), ("classes", ["a"])])
def test_settings_that_come_from_the_data_are_honoured_or_refused(tmp_path, key, value):
    data = {"frames": 16, "resolution": 64, "channels": 3, "classes": ["x", "y"], "fps": 8.0}
    given = resolve_config("small", settings=[f"model.{key}={json.dumps(value)}"])
    with pytest.raises(
        ValueError, match=rf"model.{key} is {re.escape(repr(value))} in the config but .* in the data: .*come from the dataset"
    ):
        given.with_data_shape(**data)
    agrees = resolve_config("small", settings=[f"model.{key}={json.dumps(data[key])}"]).with_data_shape(**data)
    assert getattr(agrees.model, key) == data[key]  # honoured: the same as the data's
    preset = tmp_path / "p.yaml"
    preset.write_text(f"model: {{name: tgan, {key}: {json.dumps(value)}}}\n")
    with pytest.raises(ValueError, match=f"model.{key} is"):
        load_config(str(preset)).with_data_shape(**data)
    # a run's own saved config.json, used again on the same data, is honoured as it is
    saved = tmp_path / "config.json"
    load_config("small").with_data_shape(**data).save(saved)
    assert load_config(str(saved)).with_data_shape(**data).model == load_run_config(saved).model


def test_with_overrides_validates():
    cfg = load_config("tiny")
    assert with_overrides(cfg, {"train.steps": 7}).train.steps == 7
    with pytest.raises(ValueError, match="train.steps: Input should be greater than 0"):
        with_overrides(cfg, {"train.steps": 0})


def test_a_run_saves_exactly_its_models_settings(tmp_path):
    load_config("small", {"model.name": "videogan"}).save(tmp_path / "gan.json")
    resolve_config("small", model="vqvae").save(tmp_path / "vq.json")
    gan = json.loads((tmp_path / "gan.json").read_text())
    # its model's settings and nothing else; the clip shape only once the data has filled it in
    assert "vq" not in gan and set(gan["model"]) == set(model_settings("videogan")) - set(DATA_FIELDS)
    load_config("small").with_data_shape(frames=8, resolution=32, channels=1).save(tmp_path / "run.json")
    assert set(json.loads((tmp_path / "run.json").read_text())["model"]) == set(model_settings("ctvgan"))
    assert json.loads((tmp_path / "vq.json").read_text())["vq"]["codebook_size"] == 512
    assert load_run_config(tmp_path / "gan.json") == load_config("small", {"model.name": "videogan"})
    assert load_run_config(tmp_path / "vq.json").vq.codebook_size == 512


def _old_ctvgan(**model) -> dict:
    """A ctvgan config.json as vidgan 0.1 wrote it (the runs_v1 fixture's), with `model` changed."""
    from pathlib import Path

    raw = json.loads((Path(__file__).parent / "fixtures" / "runs_v1" / "ctvgan" / "config.json").read_text())
    raw["model"] |= model
    return raw


def test_old_runs_read_as_todays_settings(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps(_old_ctvgan(synthesis="layers", own_layer_codes=True, layer_snap=True, moving_layers=3, layer_size=0.5)))
    cfg = load_run_config(old)
    assert (cfg.model.name, cfg.model.layers, cfg.model.snap, cfg.model.layer_size) == ("sprites", 3, True, 0.5)
    assert 'ctvgan with synthesis "layers" is the sprites model' in capsys.readouterr().err
    old.write_text(json.dumps(_old_ctvgan()))
    assert load_run_config(old).model.name == "ctvgan" and capsys.readouterr().err == ""  # nothing it used was removed


@pytest.mark.parametrize(
    "model, what",
    [({"synthesis": "style"}, 'synthesis "style"'), ({"content_std": True}, "content_std"),
     ({"synthesis": "layers", "own_layer_codes": False}, "without own_layer_codes")],
)  # fmt: skip
def test_old_runs_with_a_removed_option_are_refused_in_one_line(tmp_path, model, what):
    old = tmp_path / "old.json"
    old.write_text(json.dumps(_old_ctvgan(**model)))
    with pytest.raises(ValueError, match=f"{old}: this ctvgan run uses .*{what}.*vidgan 0.2 removed"):
        load_run_config(old)


def test_a_hand_edited_config_json_is_not_quietly_trimmed(tmp_path):
    """Only vidgan 0.1's flat section has its unused fields dropped; a stray key in today's is refused."""
    cfg = tmp_path / "config.json"
    load_config("tiny").save(cfg)
    raw = json.loads(cfg.read_text())
    raw["model"]["motion_spacing"] = 2.0
    cfg.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="videogan has no setting 'motion_spacing'"):
        load_run_config(cfg)
