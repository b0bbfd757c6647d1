"""Run configuration: pydantic models, YAML presets in, `config.json` saved in every run dir.

A preset (`tiny`, `small`, `64px`, ...) or a YAML file gives the model widths and training
settings; the clip shape (frames, resolution, channels) always comes from the prepared
dataset, so one preset serves any dataset.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    # A typo in a YAML key should be an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    name: str = "videogan"
    z_dim: int = 100
    g_channels: int = 512  # widest generator layer; halves at every upsampling block
    d_channels: int = 64  # narrowest discriminator layer; doubles at every downsampling block
    max_channels: int = 512
    spectral_norm: bool = False  # on the discriminator's convs
    # What the generator is conditioned on: "none", "class" (dataset labels), "text" (caption
    # embeddings, text_dim wide) or "first-frame" (generate the rest of a clip from its frame 0).
    condition: str = "none"
    cond_dim: int = 64  # width of the condition embedding fed to G and used for D's projection
    text_dim: int = 384  # MiniLM-L6 sentence embeddings
    # Model-specific settings; models that do not use a field ignore it. None means "as wide as z_dim".
    frame_dim: int | None = None  # tgan: width of each frame's latent z_t from the temporal generator
    content_dim: int | None = None  # mocogan: width of the content code (one per clip); G.z_dim adds frames * noise_dim
    noise_dim: int = 10  # mocogan: width of the per-frame motion noise eps_t (10 in MoCoGAN)
    motion_dim: int = 10  # mocogan: width of the motion code m_t, the GRU's state (MoCoGAN's d_M = 10)
    image_frames: int = 1  # mocogan: frames per clip the image discriminator judges (mean of their logits)
    # Filled from the dataset at train time.
    frames: int = 16
    resolution: int = 64
    channels: int = 3
    num_classes: int = 0
    fps: float = 8.0  # playback rate of generated clips: the training data's rate


class LossConfig(_Strict):
    name: str = "nonsat"  # nonsat, hinge, wgan, lsgan (vidgan.training.losses.LOSSES)
    smoothing: float = 0.0  # one-sided label smoothing: real target 1 - smoothing (nonsat, lsgan)
    penalty: str = "none"  # "r1" (on real clips) or "gp" (WGAN-GP, on interpolates)
    penalty_weight: float = 10.0  # gamma for R1 (applied as gamma/2), lambda for GP
    penalty_every: int = 1  # lazy regularisation: every N D steps, weighted by N
    augment: str = ""  # DiffAugment policy for real and fake clips, e.g. "color,translation,cutout"
    mask_l1: float = 0.0  # videogan-2stream: L1 sparsity prior on the foreground mask (the paper used 0.1)


class TrainConfig(_Strict):
    batch_size: int = 16  # global batch: split across DDP ranks
    steps: int = 10_000
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    ema_beta: float = 0.999
    lr_schedule: str = "constant"  # constant, linear (decay to 0 at `steps`) or cosine
    warmup_steps: int = 0  # linear learning-rate warm-up
    seed: int = 0
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    num_samples: int = 16  # fixed-noise clips in each sample grid and the diversity monitor
    warmup_collapse_steps: int = 200  # no mode-collapse warnings before this step (early G is uniform)
    time_budget: float | None = Field(default=None, description="stop (with a checkpoint) after this many seconds")


class RunConfig(_Strict):
    data: str = ""  # prepared dataset directory
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.model_validate(json.loads(Path(path).read_text()))


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("vidgan.configs").iterdir() if p.name.endswith(".yaml"))


def load_config(name_or_path: str, overrides: dict | None = None) -> RunConfig:
    """A preset name (`tiny`) or a YAML file path, with optional nested overrides applied on top."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"{path}: config file not found")
        text = path.read_text()
    else:
        preset = resources.files("vidgan.configs") / f"{name_or_path}.yaml"
        if not preset.is_file():
            raise ValueError(f"unknown config preset {name_or_path!r}; presets: {', '.join(preset_names())}, or a YAML path")
        text = preset.read_text()
    raw = yaml.safe_load(text) or {}
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return RunConfig.model_validate(raw)
