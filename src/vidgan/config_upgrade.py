"""A run's config.json, from this vidgan or an earlier one, read as today's settings.

Until vidgan 0.2 one flat model section served every model, and each model ignored the fields it did
not read: those are dropped here (the model never read them, so nothing changes). ctvgan's synthesis
"layers" became the `sprites` model; ctvgan's other image networks and the options that lost their
comparisons were removed (docs/experiments/): a run that used one is refused in one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vidgan.config import MODEL_CONFIGS, RunConfig, TwoStageModelConfig, validated

_said: set[str] = set()


def _note(line: str) -> None:
    if line not in _said:  # once per process, however often the run's config is read
        _said.add(line)
        print(f"note: {line}", file=sys.stderr)


def _refuse(source: str, what: str) -> ValueError:
    return ValueError(
        f"{source}: this ctvgan run uses {what}, which vidgan 0.2 removed (it lost its comparison); sample it with vidgan 0.1"
    )


def _ctvgan_0_1(model: dict, source: str) -> dict:
    """A ctvgan section written by vidgan 0.1 (it has `synthesis`) as a ctvgan or sprites section."""
    synthesis = model.pop("synthesis")
    if synthesis not in ("dcgan", "layers"):
        raise _refuse(source, f'model.synthesis "{synthesis}"')
    if model.get("content_std"):
        raise _refuse(source, "model.content_std")
    if synthesis == "dcgan":
        return model
    if not model.get("own_layer_codes") or model.get("layer_supersample"):
        raise _refuse(source, "layers without own_layer_codes, or with layer_supersample,")
    _note(f'{source}: ctvgan with synthesis "layers" is the sprites model since vidgan 0.2; loaded as sprites')
    moved = {"name": "sprites", "layers": model.get("moving_layers", 2), "layer_size": model.get("layer_size", 1.0)}
    return model | moved | {"snap": model.get("layer_snap", False)}


# fields of 0.1's flat section that no model of today has all of: a section with all four is from 0.1
FLAT_0_1 = {"frame_dim", "content_dim", "noise_dim", "image_frames"}


def upgraded(raw: object, source: str) -> object:
    """`raw` (a parsed config.json) with a vidgan 0.1 model section in today's form; today's as it is."""
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict) or not FLAT_0_1 <= raw["model"].keys():
        return raw  # today's (validation says what is wrong, if anything)
    model = dict(raw["model"])
    if model.get("name") == "ctvgan" and "synthesis" in model:
        model = _ctvgan_0_1(model, source)
    cls = MODEL_CONFIGS.get(model.get("name"))
    if cls is None:
        return raw
    out = {**raw, "model": {key: value for key, value in model.items() if key in cls.model_fields}}
    if cls is not TwoStageModelConfig:
        out.pop("vq", None)  # 0.1 wrote the two-stage section into every run
    return out


def load_run_config(path: str | Path) -> RunConfig:
    """A run's saved config.json, written by this version or an earlier one."""
    try:
        raw = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); restore the run's config.json or start a new run") from None
    return validated(upgraded(raw, str(path)), str(path))
