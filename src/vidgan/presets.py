"""Where a run's settings come from: presets (configs/*.yaml), recipes (configs/recipes/*.yaml), the
command's options and `--set`, resolved by one function, `resolve_config`, in a documented order.

A preset is written for its default model (its top level) and holds the other models' settings in
`models: NAME:`; a recipe names its base preset and model and gives what was tuned for one kind of
data (`vidgan train --recipe sprites`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from vidgan.config import DATA_FIELDS, RunConfig, validated
from vidgan.config_upgrade import upgraded


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("vidgan.configs").iterdir() if p.name.endswith(".yaml"))


def recipe_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("vidgan.configs").joinpath("recipes").iterdir() if p.name.endswith(".yaml"))


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def _read_yaml(text: str, source: str) -> dict:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{source}:{at} not valid YAML ({getattr(err, 'problem', None) or err}); fix the file") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: a config must be a mapping of sections (model:, loss:, train:, ...)")
    return raw


def read_preset(name_or_path: str) -> dict:
    """A preset (`tiny`) or a YAML file as a dict of sections, with its `models:` table."""
    path = Path(name_or_path)
    preset = resources.files("vidgan.configs") / f"{name_or_path}.yaml"
    if path.suffix in (".yaml", ".yml", ".json") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: config file not found; pass a preset ({', '.join(preset_names())}) or a YAML file")
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a text file; --config takes a preset name or a YAML file") from None
    elif "/" not in name_or_path and preset.is_file():
        text = preset.read_text()
    else:
        raise ValueError(f"unknown config preset {name_or_path!r}; presets: {', '.join(preset_names())}, or a YAML file path")
    raw = _read_yaml(text, name_or_path)
    return upgraded(raw, name_or_path) if path.suffix == ".json" else raw  # a run's config.json, maybe an older one


def read_recipe(name: str) -> dict:
    """Recipe `name` (configs/recipes/NAME.yaml): `base` (a preset) and sections over it, `model.name` among them."""
    file = resources.files("vidgan.configs").joinpath("recipes", f"{name}.yaml")
    if "/" in name or not file.is_file():
        raise ValueError(f"unknown recipe {name!r}; recipes: {', '.join(recipe_names())}")
    raw = _read_yaml(file.read_text(), f"recipe {name}")
    if not isinstance(raw.get("base"), str) or not isinstance((raw.get("model") or {}).get("name"), str):
        raise ValueError(f"recipe {name}: a recipe names its base preset (base:) and its model (model: {{name: ...}})")
    return raw


def _dotted(overrides: dict) -> dict:
    """{"train.steps": 10, "data": "d"} -> {"train": {"steps": 10}, "data": "d"}."""
    out: dict = {}
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def parse_settings(settings: list[str]) -> dict:
    """`--set SECTION.KEY=VALUE` items (VALUE read as YAML: 0.1, true, [2, 4, 4], hinge) as dotted overrides."""
    out = {}
    for item in settings:
        dotted, sep, text = item.partition("=")
        parts = dotted.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ValueError(f"--set {item!r}: write SECTION.KEY=VALUE, e.g. --set vq.adversarial=0.1 or --set train.lr_d=0.0004")
        if parts[0] not in RunConfig.model_fields or parts[0] == "data":
            sections = [k for k in RunConfig.model_fields if k != "data"]
            raise ValueError(f"--set {item!r}: no section {parts[0]!r}; sections: {', '.join(sections)}")
        try:
            out[".".join(parts)] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ValueError(
                f"--set {item!r}: the value is not valid YAML; quote it or write it as a number, true/false or [a, b]"
            ) from None
    return out


def resolve_config(
    config: str | None = None, model: str | None = None, recipe: str | None = None, overrides: dict | None = None, settings: list[str] = ()
) -> RunConfig:
    """The one way a run's config is made, in this order (later wins):

    1. the preset or YAML file `config` (default: the recipe's base preset, else `small`);
    2. the chosen model's section of it: the top level for the preset's own model, else its
       `models: NAME:` entry, whose `model:`, `loss:` and `vq:` replace the top level's and whose
       `train:` is merged over it (the model is `model`, else the recipe's, else the preset's);
    3. the recipe's sections (configs/recipes/NAME.yaml);
    4. `overrides`: dotted settings from the command's own options ({"train.steps": 10});
    5. `settings`: `--set SECTION.KEY=VALUE` items.
    Clip shape and classes come from the data (RunConfig.with_data_shape, at train time).
    """
    layers: list[tuple[str, dict]] = []
    rec = read_recipe(recipe) if recipe else {}
    if rec and model is not None and model != rec["model"]["name"]:
        raise ValueError(f"recipe {recipe} is for --model {rec['model']['name']}, not {model}; drop one of them")
    config = config or rec.get("base") or "small"
    raw = read_preset(config)
    per_model = raw.pop("models", None) or {}
    default = (raw.get("model") or {}).get("name", "videogan")
    given = parse_settings(list(settings))
    # --set model.name=X and an option's model.name choose the model's section as --model X does
    name = model or (rec.get("model") or {}).get("name") or given.get("model.name") or (overrides or {}).get("model.name") or default
    if name != default:
        entry = per_model.get(name) or {}
        raw = {**raw, "model": {}, "loss": {}} | {k: v for k, v in entry.items() if k in ("model", "loss", "vq")}
        raw["train"] = _merge(raw.get("train") or {}, entry.get("train") or {})
    raw.setdefault("model", {})["name"] = name
    layers.append((f"config {config}", raw))
    if rec:
        layers.append((f"recipe {recipe}", {k: v for k, v in rec.items() if k != "base"}))
    if overrides:
        layers.append(("settings", _dotted(overrides)))
    if given:
        layers.append(("--set", _dotted(given)))
    merged, origin = {}, {}
    for source, layer in layers:
        merged = _merge(merged, layer)
        origin |= {key: source for key in _leaves(layer)}
    return validated(merged, f"config {config}", origin)


def _leaves(raw: dict) -> list[str]:
    """The SECTION.KEY names a layer of settings gives."""
    return [f"{section}.{key}" for section, keys in raw.items() if isinstance(keys, dict) for key in keys]


def load_config(name_or_path: str, overrides: dict | None = None) -> RunConfig:
    """A preset name (`tiny`) or a YAML file path, with optional dotted overrides ({"train.steps": 10})."""
    return resolve_config(name_or_path, overrides=overrides)


def with_overrides(cfg: RunConfig, overrides: dict, source: str = "settings") -> RunConfig:
    """The config with dotted overrides ({"train.steps": 10}) applied and validated (e.g. on resume)."""
    # only what was given: defaults stay defaults (so a clip shape the config never set is not "given")
    extra = _dotted(overrides)
    return validated(_merge(cfg.model_dump(exclude_unset=True), extra), "config", {key: source for key in _leaves(extra)})


def apply_settings(cfg: RunConfig, settings: list[str]) -> RunConfig:
    """`--set section.key=value` overrides on a config (resume: the run's saved one)."""
    return with_overrides(cfg, parse_settings(settings), "--set")


def changed_setting(run: RunConfig, other: RunConfig) -> str | None:
    """The first model/loss/train/vq setting (SECTION.KEY) in which `other` differs from `run`, leaving out
    what training fills in (the clip shape, the VQ-VAE checkpoint step); None when they agree."""
    for section in ("model", "loss", "train", "vq"):
        a, b = getattr(run, section), getattr(other, section)
        a, b = (x.model_dump() if x is not None else {} for x in (a, b))
        for key in sorted(set(a) | set(b)):
            filled = section == "model" and key in DATA_FIELDS or section == "vq" and key == "vqvae_step"
            if not filled and a.get(key) != b.get(key):
                return f"{section}.{key}"
    return None
