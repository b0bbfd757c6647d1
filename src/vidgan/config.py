"""Run configuration: the settings of a run as pydantic models, one section each (`model`, `loss`,
`train`, `vq`), and one settings class per model family, chosen by `model.name`; saved as
`config.json` in every run folder. Where the values come from (presets, recipes, options, --set) is
vidgan.presets' job. The clip shape (frames, resolution, channels, classes, fps) always comes from
the prepared dataset, so one preset serves any dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


DATA_FIELDS = ("frames", "resolution", "channels", "num_classes", "classes", "fps")


class ModelBase(_Strict):
    """What every model has: what it is conditioned on, and the clip shape and classes, which come from
    the prepared dataset (RunConfig.with_data_shape: a value given in a config must agree with the data)."""

    name: str
    # "none", "class" (dataset labels), "text" (caption embeddings, text_dim wide) or "first-frame"
    # (generate the rest of a clip from its frame 0)
    condition: str = "none"
    text_dim: Positive = 384  # MiniLM-L6 sentence embeddings
    frames: Positive = 16
    resolution: Positive = 64
    channels: Positive = 3
    num_classes: NonNegative = 0
    classes: list[str] = []  # class names (the dataset's sub-folder names), index = label
    fps: Rate = 8.0  # playback rate of generated clips: the training data's rate


class GANModel(ModelBase):
    """What every GAN has: noise, widths, the discriminator's regularisers and the condition embedding."""

    z_dim: Positive = 100
    g_channels: Positive = 512  # widest generator layer; halves at every upsampling block
    d_channels: Positive = 64  # narrowest discriminator layer; doubles at every downsampling block
    max_channels: Positive = 512
    spectral_norm: bool = False  # on the discriminator's convs
    # ProGAN's minibatch standard deviation: D sees how much the clips of a small group differ, so a
    # generator that ignores its noise is easy to spot
    minibatch_std: bool = False
    cond_dim: Positive = 64  # width of the condition embedding fed to G and used for D's projection


class VideoGANConfig(GANModel):
    """vidgan.models.videogan: 3D convolutions; videogan-2stream adds a static background and a mask."""

    name: Literal["videogan", "videogan-2stream"] = "videogan"


class TGANConfig(GANModel):
    """vidgan.models.tgan: a GRU unrolls z into per-frame latents for a 2D image generator."""

    name: Literal["tgan"] = "tgan"
    frame_dim: Positive | None = None  # width of each frame's latent z_t (None: z_dim)


class MoCoGANConfig(GANModel):
    """vidgan.models.mocogan: one content code per clip, a motion code per frame."""

    name: Literal["mocogan"] = "mocogan"
    content_dim: Positive | None = None  # width of the content code (None: z_dim); G's noise adds frames * noise_dim
    noise_dim: Positive = 10  # width of the per-frame motion noise eps_t
    motion_dim: Positive = 10  # width of the motion code m_t, the GRU's state (MoCoGAN's d_M)
    image_frames: Positive = 1  # frames per clip the image discriminator judges


class ContinuousTimeModel(GANModel):
    """What the continuous-time models (ctvgan, sprites) share: content mapping, motion codes on the
    time axis, and a discriminator that sees a few frames per clip with their time gaps."""

    w_dim: Positive = 128  # width of the mapped content code w
    mapping_layers: NonNegative = 2  # layers of the mapping network z -> w
    motion_dim: Positive = 10  # width of a motion code
    motion_spacing: Rate = 4.0  # frames between two random motion codes on the time axis
    sparse_frames: Positive = 3  # frames per clip the discriminator sees (and the generator renders in training)
    fuse_resolution: Positive = 8  # the discriminator judges frames one by one down to this size, then together


class CTVGANConfig(ContinuousTimeModel):
    """vidgan.models.ctvgan: every frame drawn by one 2D image network from (content, motion at t)."""

    name: Literal["ctvgan"] = "ctvgan"


class SpritesConfig(ContinuousTimeModel):
    """vidgan.models.sprites: objects moving over a plain, static background (Moving MNIST-like data)."""

    name: Literal["sprites"] = "sprites"
    layers: Positive = 2  # objects per clip, each drawn once from its own content code (z_dim each)
    layer_size: Annotated[float, Field(gt=0, le=1)] = 0.5  # an object's side as a fraction of the frame's
    # place objects at whole pixels (gradients as if placed exactly): a fractional shift resamples, so blurs
    snap: bool = True


class TwoStageModelConfig(ModelBase):
    """The two-stage generator (vqvae, then videogpt on its tokens): its settings are the `vq:` section."""

    name: Literal["vqvae", "videogpt"] = "vqvae"


MODEL_CONFIGS: dict[str, type[ModelBase]] = {
    name: cls
    for cls in (VideoGANConfig, TGANConfig, MoCoGANConfig, CTVGANConfig, SpritesConfig, TwoStageModelConfig)
    for name in cls.model_fields["name"].annotation.__args__
}
ModelConfig = Annotated[
    VideoGANConfig | TGANConfig | MoCoGANConfig | CTVGANConfig | SpritesConfig | TwoStageModelConfig, Field(discriminator="name")
]


def model_config(**settings) -> ModelBase:
    """The settings class of model `name` (default videogan) with `settings`: ModelConfig's constructor."""
    name = settings.get("name", "videogan")
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODEL_CONFIGS))}")
    return MODEL_CONFIGS[name](**settings)


class LossConfig(_Strict):
    name: str = "nonsat"  # nonsat, hinge, wgan, lsgan (vidgan.training.losses.LOSSES)
    smoothing: Fraction = 0.0  # one-sided label smoothing: real target 1 - smoothing (nonsat, lsgan)
    penalty: str = "none"  # "r1" (on real clips) or "gp" (WGAN-GP, on interpolates)
    penalty_weight: Weight = 10.0  # gamma for R1 (applied as gamma/2), lambda for GP
    penalty_every: Positive = 1  # lazy regularisation: every N D steps, weighted by N
    # DiffAugment policy for real and fake clips, e.g. "color,translation,cutout"; "auto": that policy for
    # training sets of fewer than 1,000 clips, none for larger ones (vidgan.training.augment.resolve_policy)
    augment: str = ""
    # L1 sparsity prior on the mask a generator returns (videogan-2stream's foreground, sprites' alpha)
    mask_l1: Weight = 0.0
    # MSGAN's mode-seeking term (Mao et al. 2019), so different noise draws different things: compares
    # the drawing a generator returns (sprites: the objects, wherever they move), else the clips
    mode_seeking: Weight = 0.0


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
    # with a time budget, a decay ends this fraction past where the budget ends, so the last steps still
    # learn (docs/experiments/)
    decay_past_budget: Weight = 0.15
    warmup_steps: NonNegative = 0  # linear learning-rate warm-up
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    log_every: Positive = 10
    sample_every: Positive = 500
    checkpoint_every: Positive = 500
    keep_checkpoints: NonNegative = 3  # 0 = keep every checkpoint
    num_samples: Positive = 16  # fixed-noise clips in each sample grid and the diversity monitor
    # the diversity monitor renders the num_samples fixed-noise clips on the first logged step of every
    # monitor_every steps (and the last): every logged step cost a visible share of a CPU run's steps
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
    model: ModelConfig = Field(default_factory=VideoGANConfig)
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    vq: VQConfig | None = None  # the two-stage models only (vqvae, videogpt)

    @model_validator(mode="after")
    def _vq_only_for_two_stage(self) -> RunConfig:
        if self.two_stage and self.vq is None:
            self.vq = VQConfig()
        elif not self.two_stage and self.vq is not None:
            raise ValueError(f"vq: settings of the two-stage models (vqvae, videogpt), and model.name is {self.model.name}; remove them")
        return self

    @property
    def two_stage(self) -> bool:
        return isinstance(self.model, TwoStageModelConfig)

    def save(self, path: str | Path) -> None:
        """Every setting as JSON; the clip shape only where it is set (a run's: filled from its data), so a
        config saved before training still fits any dataset."""
        unset = {key for key in DATA_FIELDS if key not in self.model.model_fields_set}
        exclude = {"model": unset} | ({"vq": True} if self.vq is None else {})
        Path(path).write_text(json.dumps(self.model_dump(mode="json", exclude=exclude), indent=2) + "\n")

    def with_data_shape(self, frames: int, resolution: int, channels: int, classes: list[str] | tuple = (), fps: float = 8.0) -> RunConfig:
        """The config with the clip shape and classes of a dataset filled in. They come from the data: one
        that the config gives (a preset, a --set, a saved config.json) is honoured if the data agrees
        and refused in one line otherwise, never silently replaced."""
        shape = {"frames": frames, "resolution": resolution, "channels": channels, "num_classes": len(classes)}
        shape |= {"classes": list(classes), "fps": float(fps)}
        for key in DATA_FIELDS:
            given = getattr(self.model, key)
            if key in self.model.model_fields_set and given != shape[key] and not (key == "classes" and not given):
                how = {"frames": "--frames", "resolution": "--size", "fps": "--fps"}.get(key)
                fix = f"prepare the data with {how} {given}, or remove" if how else "remove"
                raise ValueError(
                    f"model.{key} is {given!r} in the config but {shape[key]!r} in the data{f' {self.data}' if self.data else ''}: the clip shape and "
                    f"classes come from the dataset; {fix} model.{key} from the config"
                )
        return self.model_copy(update={"model": self.model.model_copy(update=shape)}, deep=True)

    def resume_conflict(self, saved: RunConfig) -> str | None:
        """Which settings differ from a saved run's in a way its weights cannot follow ("model/loss",
        "model/vq"), or None when this config can continue that run."""
        if self.two_stage:
            mutable = {"vqvae_run", "tokens"}
            same = self.model == saved.model and self.vq.model_dump(exclude=mutable) == saved.vq.model_dump(exclude=mutable)
            return None if same else "model/vq"
        return None if self.model == saved.model and self.loss == saved.loss else "model/loss"


def validated(raw: object, source: str, origin: dict[str, str] | None = None) -> RunConfig:
    """`raw` as a RunConfig; an invalid setting is one line naming where it came from (`origin`: which
    source gave each SECTION.KEY, else `source`), the setting and the rule."""
    origin = origin or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: a config must be a mapping of sections (model:, loss:, train:, ...), not {type(raw).__name__}")
    model = raw.get("model")
    if isinstance(model, dict):  # a setting the chosen model does not have is refused, not ignored
        name = model.get("name", "videogan")
        known = model_settings(name, origin.get("model.name", source))
        _known(
            model, known, lambda key: f"{origin.get(f'model.{key}', source)}: model.{key}: {name} has no setting {key!r}; its settings: "
        )
    for section, cls in (("loss", LossConfig), ("train", TrainConfig), ("vq", VQConfig)):
        if isinstance(raw.get(section), dict):
            where = lambda key, section=section: (
                f"{origin.get(f'{section}.{key}', source)}: {section}.{key}: {section} has no setting {key!r}; it has "
            )  # noqa: E731
            _known(raw[section], list(cls.model_fields), where)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        # a model's section is validated as its own class: drop that class's tag from the location
        loc = [str(part) for part in first["loc"]]
        if loc[:1] == ["model"] and len(loc) > 1 and loc[1] in MODEL_CONFIGS:
            del loc[1]
        where = ".".join(loc)
        value = f" (got {first['input']!r})" if not isinstance(first.get("input"), dict) else ""
        more = f"; and {err.error_count() - 1} more" if err.error_count() > 1 else ""
        raise ValueError(f"{origin.get('.'.join(loc[:2]), source)}: {where}: {first['msg']}{value}{more}") from None


def _known(section: dict, known: list[str], message) -> None:
    for key in section:
        if key not in known:
            raise ValueError(message(key) + ", ".join(known))


def model_settings(name: object, source: str = "config") -> list[str]:
    """The settings model `name` has (its class's fields), or one line naming the models there are."""
    if not isinstance(name, str) or name not in MODEL_CONFIGS:
        raise ValueError(f"{source}: model.name: unknown model {name!r}; available: {', '.join(sorted(MODEL_CONFIGS))}")
    return list(MODEL_CONFIGS[name].model_fields)
