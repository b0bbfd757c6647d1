"""Run configuration: pydantic models, YAML presets in, `config.json` saved in every run dir.

A preset (`tiny`, `small`, `64px`, ...) or a YAML file gives the model widths and training
settings; the clip shape (frames, resolution, channels) always comes from the prepared
dataset, so one preset serves any dataset.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Ranges every setting must respect: an impossible value is refused when the config is read, not
# discovered as a crash (or worse, a silently wrong run) later.
Positive = Annotated[int, Field(gt=0)]
NonNegative = Annotated[int, Field(ge=0)]
Rate = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # learning rates, sizes of steps
Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # loss weights, penalties
Fraction = Annotated[float, Field(ge=0, lt=1)]  # EMA decays, smoothing, Adam betas


class _Strict(BaseModel):
    # A typo in a YAML key should be an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    name: str = "videogan"
    z_dim: Positive = 100
    g_channels: Positive = 512  # widest generator layer; halves at every upsampling block
    d_channels: Positive = 64  # narrowest discriminator layer; doubles at every downsampling block
    max_channels: Positive = 512
    spectral_norm: bool = False  # on the discriminator's convs
    # ProGAN's minibatch standard deviation: D sees how much the clips of a small group differ,
    # so a generator that ignores its noise is easy to spot (fights mode collapse).
    minibatch_std: bool = False
    # What the generator is conditioned on: "none", "class" (dataset labels), "text" (caption
    # embeddings, text_dim wide) or "first-frame" (generate the rest of a clip from its frame 0).
    condition: str = "none"
    cond_dim: Positive = 64  # width of the condition embedding fed to G and used for D's projection
    text_dim: Positive = 384  # MiniLM-L6 sentence embeddings
    # Model-specific settings; models that do not use a field ignore it. None means "as wide as z_dim".
    frame_dim: Positive | None = None  # tgan: width of each frame's latent z_t from the temporal generator
    content_dim: Positive | None = None  # mocogan: width of the content code (one per clip); G.z_dim adds frames * noise_dim
    noise_dim: Positive = 10  # mocogan: width of the per-frame motion noise eps_t (10 in MoCoGAN)
    motion_dim: Positive = 10  # mocogan: width of the motion code m_t, the GRU's state (MoCoGAN's d_M = 10)
    image_frames: Positive = 1  # mocogan: frames per clip the image discriminator judges (mean of their logits)
    # ctvgan (continuous-time generator, vidgan.models.ctvgan)
    w_dim: Positive = 128  # width of the mapped content code w
    mapping_layers: Positive = 2  # layers of the mapping network z -> w
    motion_spacing: Rate = 4.0  # frames between two random motion codes on the time axis
    sparse_frames: Positive = 3  # frames per clip that the discriminator sees (and the generator renders in training)
    fuse_resolution: Positive = 8  # the discriminator judges frames one by one down to this size, then together
    # the per-frame image network: "dcgan" (BatchNorm, transposed convs), "resize-conv" (the same with
    # nearest 2x upsampling + 3x3 convs), "style" (StyleGAN2 modulated convs) or "layers" (the DCGAN
    # network draws a smooth backdrop and `moving_layers` layers once per clip; motion only moves them)
    synthesis: str = "dcgan"
    # ctvgan D: the minibatch std of spatially averaged frame features as one more input (sees a
    # generator that draws the same thing in different places, which the std of feature maps misses)
    content_std: bool = False
    moving_layers: Positive = 2  # ctvgan synthesis "layers": layers that move over the backdrop
    # ctvgan synthesis "layers": a layer's side as a fraction of the frame's (1: frame-sized layers;
    # 0.5: sprites half the frame wide, drawn at half the resolution, which bounce off the frame's edges)
    layer_size: Annotated[float, Field(gt=0, le=1)] = 1.0
    # ctvgan synthesis "layers": draw each layer by itself from its own content code (noise of z_dim per
    # layer, one image network shared by all): what one layer shows does not decide what another does
    own_layer_codes: bool = False
    # ctvgan synthesis "layers" with layer_size < 1: draw the layers at the frame's resolution and
    # box-filter them down to their size (smooth, anti-aliased edges, as downscaled video has)
    layer_supersample: bool = False
    # ctvgan synthesis "layers": place the layers at whole pixels (gradients as if placed exactly): a layer
    # shifted by a fraction of a pixel is resampled, and so blurred; whole-pixel shifts copy it as drawn
    layer_snap: bool = False
    # Filled from the dataset at train time.
    frames: Positive = 16
    resolution: Positive = 64
    channels: Positive = 3
    num_classes: NonNegative = 0
    classes: list[str] = []  # class names (the dataset's sub-folder names), index = label
    fps: Rate = 8.0  # playback rate of generated clips: the training data's rate


class LossConfig(_Strict):
    name: str = "nonsat"  # nonsat, hinge, wgan, lsgan (vidgan.training.losses.LOSSES)
    smoothing: Fraction = 0.0  # one-sided label smoothing: real target 1 - smoothing (nonsat, lsgan)
    penalty: str = "none"  # "r1" (on real clips) or "gp" (WGAN-GP, on interpolates)
    penalty_weight: Weight = 10.0  # gamma for R1 (applied as gamma/2), lambda for GP
    penalty_every: Positive = 1  # lazy regularisation: every N D steps, weighted by N
    # DiffAugment policy for real and fake clips, e.g. "color,translation,cutout"; "auto": that policy for
    # training sets of fewer than 1,000 clips, none for larger ones (vidgan.training.augment.resolve_policy)
    augment: str = ""
    # L1 sparsity prior on what a model reports as its mask: videogan-2stream's foreground mask (the
    # paper used 0.1); ctvgan "layers": the layers' alpha (transparent wherever nothing is drawn)
    mask_l1: Weight = 0.0
    # MSGAN's mode-seeking term (Mao et al. 2019): weight of 1 / (how far apart two clips' drawings are
    # / how far apart their noises are), so G cannot draw the same thing for different noise. It
    # compares what a model reports as its drawing (ctvgan "layers": the layers, wherever they move),
    # else the clips.
    mode_seeking: Weight = 0.0


TWO_STAGE_MODELS = ("vqvae", "videogpt")


class VQConfig(_Strict):
    """The two-stage generator (models vqvae, videogpt): VQ-VAE tokenizer + Transformer prior over its tokens."""

    # stage 1: VQ-VAE (vidgan.models.vqvae)
    downsample: tuple[int, int, int] = (4, 4, 4)  # (time, height, width) shrink factors of the token grid; powers of two
    width: Positive = 64  # conv channels of the encoder/decoder
    res_blocks: NonNegative = 2
    codebook_size: Positive = 1024
    embed_dim: Positive = 64  # width of a code vector
    commitment: Weight = 0.25  # beta of the commitment loss
    ema_decay: Fraction = 0.99  # codebook EMA
    restart_threshold: Weight = 1.0  # a code whose EMA usage (vectors per batch) falls below this is restarted
    recon_loss: str = "l2"  # l1 | l2
    adversarial: Weight = 0.0  # weight of the optional patch adversarial term (hinge, 3D PatchGAN critic); 0 = off
    adversarial_start: NonNegative = 0  # step at which the adversarial term starts (reconstruction alone before it)
    adversarial_width: Positive = 32  # channels of the critic's first layer
    # stage 2: Transformer prior (vidgan.models.transformer)
    n_layer: Positive = 4
    n_head: Positive = 4
    n_embd: Positive = 128
    dropout: Fraction = 0.0
    vqvae_run: str = ""  # the stage-1 run whose tokens the prior learns (its weights are copied into the prior's checkpoints)
    vqvae_step: int | None = None  # that run's checkpoint step, recorded at train time
    tokens: str = ""  # token folder from `vidgan tokenize` (default: RUN/tokens of the VQ-VAE run if it matches, else encode at start)
    temperature: Rate = 1.0  # sampling
    top_k: NonNegative = 0  # sampling: keep the k most likely tokens (0 = all)
    # optimiser (both stages)
    lr: Rate = 3e-4
    betas: tuple[Fraction, Fraction] = (0.9, 0.95)
    weight_decay: Weight = 0.0


class TrainConfig(_Strict):
    batch_size: Positive = 16  # global batch: split across DDP ranks
    steps: Positive = 10_000
    lr_g: Rate = 2e-4
    lr_d: Rate = 2e-4
    betas: tuple[Fraction, Fraction] = (0.5, 0.999)
    ema_beta: Fraction = 0.999
    # constant, linear or cosine: decay to 0 at `steps`, or (with `time_budget`) `decay_past_budget` past
    # where the budget ends when that comes first (predicted from the step time after 25 steps and saved
    # with the checkpoints)
    lr_schedule: str = "constant"
    # With a time budget, a decay is planned to end this fraction past where the budget ends, so the
    # last steps still learn (cosine: 4% of the rate left at the end). On Moving MNIST (ctvgan's sprites
    # recipe, 600 s, held-out fd) runs whose decay ended at or before the budget's end scored 54.8, 63.5
    # and 69.8; runs whose decay would have ended 7-15% past it 40.9, 42.7 and 46.9; with this setting
    # 35.7 and 52.6 (seeds 0 and 1; README).
    decay_past_budget: Weight = 0.15
    warmup_steps: NonNegative = 0  # linear learning-rate warm-up
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    log_every: Positive = 10
    sample_every: Positive = 500
    checkpoint_every: Positive = 500
    keep_checkpoints: NonNegative = 3  # 0 = keep every checkpoint
    num_samples: Positive = 16  # fixed-noise clips in each sample grid and the diversity monitor
    # The diversity monitor renders the num_samples fixed-noise clips with the EMA generator on the first
    # logged step of every monitor_every steps (and the last). At every logged step of `small` (10) it
    # cost ctvgan's per-frame recipe 11% of its steps (90 s on Moving MNIST: 503 against 567 steps), the
    # sprites recipe 3% (349 against 361).
    monitor_every: Positive = 50
    warmup_collapse_steps: NonNegative = 200  # no mode-collapse warnings before this step (early G is uniform)
    time_budget: Rate | None = Field(default=None, description="stop (with a checkpoint) after this many seconds")
    # Quality metrics during training (vidgan.metrics): every eval_every steps (0 = never) the EMA
    # generator's eval_n clips are scored against the training data; lines go to RUN/metrics.jsonl.
    eval_every: NonNegative = 0
    eval_metrics: str = "fd_effnet"  # comma-separated metric names (see vidgan.metrics.registry)
    eval_n: Annotated[int, Field(ge=2)] = 128  # a small fixed sample: cheap enough to score often (the name says fd_effnet128_...)
    # Input size of the EfficientNet features during training: 112 px costs a quarter of `vidgan
    # evaluate`'s 224 px, so scoring stays a small share of a CPU run; the metric names say it
    # (fd_effnet128_16f_112px), so these numbers are never mistaken for the 224 px protocol.
    eval_image_size: Annotated[int, Field(ge=32, le=1024)] = 112
    # Speed (vidgan.training.speed; the trainer prints what it chose). "auto" precision: bf16 on CPUs
    # with bf16 matrix units (AMX, AVX512-BF16) and on bf16 GPUs (Ampere+), fp16 + GradScaler on older
    # GPUs, else fp32; models narrower than 64 channels (max_channels) stay fp32, where bf16 gains nothing.
    # Weights, optimizer state, losses, penalties and statistics stay fp32 either way.
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool | None = None  # channels-last-3d memory format; None = on where precision is reduced
    compile: bool = False  # torch.compile G and D; a compile failure warns once and training continues eager
    grad_accum: int = Field(default=1, ge=1, description="micro-batches per step: same update as one batch_size batch, less memory")
    loader_workers: NonNegative | None = None  # clip-loading worker processes; None = 0 on CPU, up to 4 per GPU


class RunConfig(_Strict):
    data: str = ""  # prepared dataset directory
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    vq: VQConfig = VQConfig()  # models vqvae / videogpt only: not written into other runs' config.json

    @property
    def two_stage(self) -> bool:
        return self.model.name in TWO_STAGE_MODELS

    def save(self, path: str | Path) -> None:
        exclude = None if self.two_stage else {"vq"}
        Path(path).write_text(json.dumps(self.model_dump(mode="json", exclude=exclude), indent=2) + "\n")

    def resume_conflict(self, saved: RunConfig) -> str | None:
        """Which settings differ from a saved run's in a way its weights cannot follow ("model/loss",
        "model/vq"), or None when this config can continue that run."""
        if self.two_stage:
            mutable = {"vqvae_run", "tokens"}
            same = self.model == saved.model and self.vq.model_dump(exclude=mutable) == saved.vq.model_dump(exclude=mutable)
            return None if same else "model/vq"
        return None if self.model == saved.model and self.loss == saved.loss else "model/loss"

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        try:
            raw = json.loads(Path(path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not valid JSON ({err}); restore the run's config.json or start a new run") from None
        return validated(raw, str(path))


def validated(raw: object, source: str) -> RunConfig:
    """`raw` as a RunConfig; an invalid setting is one line naming where it came from, the setting and the rule."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: a config must be a mapping of sections (model:, loss:, train:, ...), not {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        value = f" (got {first['input']!r})" if not isinstance(first.get("input"), dict) else ""
        more = f"; and {err.error_count() - 1} more" if err.error_count() > 1 else ""
        raise ValueError(f"{source}: {where}: {first['msg']}{value}{more}") from None


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("vidgan.configs").iterdir() if p.name.endswith(".yaml"))


def _set(raw: dict, dotted: str, value) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


# Named settings for a kind of data, applied over a preset (`vidgan train --recipe NAME`); what a
# preset chooses for any data, a recipe chooses for one kind of it.
RECIPES: dict[str, dict] = {
    # Objects moving over a plain background (Moving MNIST; `vidgan demo`). ctvgan draws each of 2
    # sprites half the frame wide once per clip, from its own content code, and motion only moves them,
    # by whole pixels (sub-pixel shifts blurred them: 26.3, precision 0.58, recall 0.23 before);
    # MSGAN's mode-seeking term keeps different noise drawing different things; D 32 wide judging 2
    # frames per clip; learning rates twice the preset's. 600 s on Moving MNIST against held-out digits
    # (README, "Which model?"): fd_effnet256 25.3 over 2 benchmark runs on a 2-core EPYC (precision 0.47,
    # recall 0.52) against 61.4 for the small preset's per-frame recipe and 115.1 for videogan; 21.1 over
    # 3 on a 2-core Xeon with AMX (2.6x the floor, precision 0.52, recall 0.63) against videogan's 135.3;
    # on natural video (sample-clips 64 px, measured before the drift fix) 478.8 against 336.0: its
    # backdrop is smooth, so use it for such data only.
    "sprites": {
        "model.name": "ctvgan",
        "model.synthesis": "layers",
        "model.moving_layers": 2,
        "model.layer_size": 0.5,
        "model.own_layer_codes": True,
        "model.layer_snap": True,
        "model.d_channels": 32,
        "model.sparse_frames": 2,
        "loss.penalty_weight": 1.0,
        "loss.mode_seeking": 0.05,
        "train.lr_g": 0.001,
        "train.lr_d": 0.004,
    },  # fmt: skip
}


def recipe_overrides(name: str) -> dict:
    """The dotted overrides of recipe `name` (RECIPES); a clear error naming the recipes otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; recipes: {', '.join(RECIPES)}")
    return dict(RECIPES[name])


def load_config(name_or_path: str, overrides: dict | None = None) -> RunConfig:
    """A preset name (`tiny`) or a YAML file path, with optional dotted overrides ({"train.steps": 10})
    applied on top.

    A preset is written for its default model; its `models:` section holds what differs for other
    models (`models: {videogan: {loss: {name: hinge}}}`), applied when `model.name` (from the preset or
    the overrides) names one of them."""
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
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{name_or_path}:{at} not valid YAML ({getattr(err, 'problem', None) or err}); fix the file") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{name_or_path}: a config must be a mapping of sections (model:, loss:, train:, ...)")
    per_model = raw.pop("models", None) or {}
    overrides = overrides or {}
    name = overrides.get("model.name") or (raw.get("model") or {}).get("name") or ModelConfig().name
    raw = _merge(raw, per_model.get(name) or {})
    for dotted, value in overrides.items():
        _set(raw, dotted, value)
    return validated(raw, f"config {name_or_path}")


def with_overrides(cfg: RunConfig, overrides: dict) -> RunConfig:
    """The config with dotted overrides ({"train.steps": 10, "model.name": "tgan"}) applied and validated."""
    raw = cfg.model_dump()
    for dotted, value in overrides.items():
        _set(raw, dotted, value)
    return validated(raw, "settings")


def apply_settings(cfg: RunConfig, settings: list[str]) -> RunConfig:
    """`--set section.key=value` overrides (value read as YAML: 0.1, true, [2, 4, 4], hinge) on a config."""
    raw = cfg.model_dump()
    for item in settings:
        dotted, sep, text = item.partition("=")
        parts = dotted.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ValueError(f"--set {item!r}: write SECTION.KEY=VALUE, e.g. --set vq.adversarial=0.1 or --set train.lr_d=0.0004")
        section, key = parts
        if section not in raw or not isinstance(raw[section], dict):
            raise ValueError(
                f"--set {item!r}: no section {section!r}; sections: {', '.join(k for k, v in raw.items() if isinstance(v, dict))}"
            )
        if key not in raw[section]:
            raise ValueError(f"--set {item!r}: {section} has no setting {key!r}; it has {', '.join(raw[section])}")
        try:
            raw[section][key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ValueError(
                f"--set {item!r}: the value is not valid YAML; quote it or write it as a number, true/false or [a, b]"
            ) from None
    return validated(raw, "--set")
