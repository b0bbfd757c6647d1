"""Public sampling API: `VideoPipeline.from_pretrained(run_dir)(n=4, seed=0)` -> uint8 clips."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vidgan.conditioning import default_labels, make_condition
from vidgan.config import RunConfig
from vidgan.data.video_io import to_model, to_uint8
from vidgan.models.layers import Condition
from vidgan.models.registry import build_model, model_kind
from vidgan.run import CheckpointError, generator_weights


class VideoPipeline:
    """A trained generator and the config it was built from.

    `from_pretrained` accepts a run dir (its newest checkpoint), a run dir plus `step`, one
    checkpoint folder, or a folder written by `save_pretrained` (config.json + generator.safetensors).
    """

    def __init__(self, generator: torch.nn.Module, config: RunConfig, source: str = "", step: int | None = None):
        self.generator = generator.eval()
        self.config = config
        self.source, self.step = source, step
        self._text_encoder = None  # loaded on first use by text-conditional models

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def fps(self) -> float:
        return self.config.model.fps

    @classmethod
    def from_pretrained(
        cls, path: str | Path, step: int | None = None, ema: bool = True, device: str | torch.device = "cpu"
    ) -> VideoPipeline:
        found = generator_weights(path, step, ema)
        config = found.config
        if model_kind(config.model.name) == "vqvae":
            raise ValueError(
                f"{path}: is a VQ-VAE (stage 1 of the two-stage generator) and generates nothing by itself; "
                f"train a prior on it: vidgan train DATA --model videogpt --vqvae {path} --out PRIOR"
            )
        generator = build_model(config.model, config.vq)[0]  # videogpt: prior + VQ-VAE in one module
        if not found.file.is_file():
            raise CheckpointError(f"{found.file}: missing; the checkpoint is incomplete, pass another checkpoint or retrain")
        generator.load_state_dict(load_file(str(found.file)))
        return cls(generator.to(device), config, source=str(found.folder), step=found.step)

    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save(path / "config.json")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.generator.state_dict().items()}, str(path / "generator.safetensors"))
        return path

    @property
    def condition(self) -> str:
        return self.config.model.condition

    def noise(self, n: int, seed: int, frames: int | None = None, truncation: float | None = None) -> torch.Tensor:
        """Seeded noise; with `truncation`, values beyond +-truncation are redrawn (BigGAN's truncation
        trick: less variety, more typical clips)."""
        width = self.generator.z_dim if frames is None else self.generator.z_dim_for(frames)
        rng = torch.Generator().manual_seed(seed)
        z = torch.randn(n, width, generator=rng)
        if truncation is not None:
            if truncation <= 0:
                raise ValueError(f"truncation must be positive, got {truncation}")
            for _ in range(1000):
                outside = z.abs() > truncation
                if not outside.any():
                    break
                z[outside] = torch.randn(int(outside.sum()), generator=rng)
            z = z.clamp(-truncation, truncation)
        return z

    @torch.no_grad()
    def interpolate(self, seed_a: int, seed_b: int, steps: int = 8, truncation: float | None = None, **condition) -> np.ndarray:
        """Clips along the great circle between the noise of seed_a and seed_b (spherical interpolation),
        uint8 (steps, T, H, W, C); the first equals pipe(n=1, seed=seed_a), the last pipe(n=1, seed=seed_b)."""
        za, zb = self.noise(1, seed_a, truncation=truncation)[0], self.noise(1, seed_b, truncation=truncation)[0]
        omega = torch.arccos((za / za.norm()).dot(zb / zb.norm()).clamp(-1, 1))
        ts = torch.linspace(0, 1, steps)
        if omega.abs() < 1e-6:
            z = torch.stack([(1 - t) * za + t * zb for t in ts])
        else:
            z = torch.stack([(torch.sin((1 - t) * omega) * za + torch.sin(t * omega) * zb) / torch.sin(omega) for t in ts])
        return self._generate(z, self.make_condition(steps, **condition))

    @property
    def classes(self) -> list[str]:
        """Class names of a class-conditional model, index = label (the training data's sub-folders)."""
        m = self.config.model
        return list(m.classes) or [str(i) for i in range(m.num_classes)]

    def label_index(self, label):
        """Class names (e.g. "red") to indices; indices and None pass through."""
        if isinstance(label, str) or (isinstance(label, (list, tuple)) and any(isinstance(v, str) for v in label)):
            names = self.classes
            labels = [label] if isinstance(label, str) else list(label)
            for v in labels:
                if isinstance(v, str) and v not in names and not v.isdigit():
                    raise ValueError(f"unknown class {v!r}; this model's classes are {', '.join(names)}")
            idx = [names.index(v) if isinstance(v, str) and v in names else int(v) for v in labels]
            return idx[0] if isinstance(label, str) else idx
        return label

    def make_condition(
        self, n: int, label=None, first_frame: np.ndarray | None = None, text: str | list[str] | None = None
    ) -> Condition | None:
        """label: one class index or one per clip (class-conditional models; default cycles through
        the classes); first_frame: uint8 (H, W, C) at the model's resolution (image-to-video)."""
        kind, m = self.condition, self.config.model
        if kind == "none":
            if label is not None or first_frame is not None or text is not None:
                raise ValueError(f"{self.source}: this model is unconditional; drop --label/--text/--first-frame")
            return None
        if kind == "class":
            label = self.label_index(label)
            if label is None:
                labels = default_labels(n, m.num_classes)
            else:
                labels = (
                    torch.as_tensor(label, dtype=torch.long).reshape(-1).expand(n)
                    if np.ndim(label) == 0
                    else torch.as_tensor(label, dtype=torch.long)
                )
            if len(labels) != n or labels.min() < 0 or labels.max() >= m.num_classes:
                raise ValueError(f"labels must be {n} class indices in 0..{m.num_classes - 1}, got {label}")
            return make_condition(kind, labels=labels)
        if kind == "first-frame":
            if first_frame is None:
                raise ValueError(f"{self.source}: this model animates a given first frame; pass first_frame (--first-frame IMAGE)")
            frame = np.asarray(first_frame)
            want = (m.resolution, m.resolution, m.channels)
            if frame.shape != want or frame.dtype != np.uint8:
                raise ValueError(f"first frame must be uint8 {want}, got {frame.dtype} {frame.shape}; use load_image(path, size)")
            clip = to_model(np.broadcast_to(frame, (n, 1, *want)).copy())  # (n, C, 1, H, W)
            return make_condition(kind, first_frames=clip[:, :, 0])
        if kind == "text":
            if text is None:
                raise ValueError(f'{self.source}: this model is text-conditional; pass text (--text "a red circle moving left")')
            sentences = [text] * n if isinstance(text, str) else list(text)
            if len(sentences) != n:
                raise ValueError(f"need one sentence or {n} sentences, got {len(sentences)}")
            from vidgan.text import TextEncoder, embed_captions

            self._text_encoder = self._text_encoder or TextEncoder()
            return make_condition(kind, text=embed_captions(sentences, self._text_encoder))
        raise ValueError(f"unknown condition {kind!r} in {self.source}")

    @torch.no_grad()
    def __call__(
        self,
        n: int = 4,
        seed: int = 0,
        batch_size: int = 16,
        label=None,
        first_frame: np.ndarray | None = None,
        frames: int | None = None,
        text: str | list[str] | None = None,
        truncation: float | None = None,
        hold: str | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        time_scale: float | None = None,
    ) -> np.ndarray:
        """n clips as uint8 (n, T, H, W, C); the same seed (and condition) always gives the same clips.

        frames: generate longer (or shorter) clips than trained, for models whose motion model allows it.
        hold: "content" (same subject, n different motions) or "motion" (same motion, n subjects), for
        models that separate the two (mocogan).
        temperature, top_k: token sampling of the two-stage model (videogpt); None keeps the run's vq settings.
        time_scale: continuous-time models (ctvgan, sprites): frame i shows time i * time_scale (0.5: slow motion at
        twice the frame rate, 2: twice as fast); the same seed keeps the same content and motion path.
        """
        times = None
        if time_scale is not None:
            if not getattr(self.generator, "continuous_time", False):
                raise ValueError(
                    f"{self.config.model.name} has no continuous time; --time-scale needs a continuous-time model (ctvgan, sprites)"
                )
            if time_scale <= 0:
                raise ValueError(f"time_scale must be > 0, got {time_scale}")
            times = torch.arange(frames or self.config.model.frames, dtype=torch.float32) * time_scale
        span = frames if times is None else math.floor(times[-1].item()) + 1  # the motion codes the clip needs
        z = self.noise(n, seed, span, truncation)
        if hold is not None:
            z = self.hold(z, hold)
        with self.sampling(temperature, top_k):
            return self._generate(z, self.make_condition(n, label, first_frame, text), batch_size, frames, times)

    def replay(self, call: dict, first_frame: np.ndarray | None = None) -> np.ndarray:
        """The clips of one recorded generate call (vidgan.generation, the library's provenance):
        n, seed, label, text, frames, truncation, hold, temperature, top_k, batch_size and
        interpolate = [seed_a, seed_b] (then the n clips morph from one seed's clip to the other's)."""
        condition = {"label": call.get("label"), "first_frame": first_frame, "text": call.get("text")}
        if call.get("interpolate"):
            a, b = call["interpolate"]
            with self.sampling(call.get("temperature"), call.get("top_k")):
                return self.interpolate(a, b, steps=call["n"], truncation=call.get("truncation"), **condition)
        return self(
            n=call["n"], seed=call.get("seed", 0), batch_size=call.get("batch_size", 16), frames=call.get("frames"),
            truncation=call.get("truncation"), hold=call.get("hold"), temperature=call.get("temperature"), top_k=call.get("top_k"),
            time_scale=call.get("time_scale"), **condition,
        )  # fmt: skip

    @contextlib.contextmanager
    def sampling(self, temperature: float | None = None, top_k: int | None = None):
        """Temporarily sample the two-stage model's tokens with this temperature / top-k."""
        if temperature is None and top_k is None:
            yield
            return
        G = self.generator
        if not hasattr(G, "temperature"):
            raise ValueError(f"{self.config.model.name} has no token sampling; --temperature/--top-k apply to --model videogpt")
        if (temperature is not None and temperature <= 0) or (top_k is not None and top_k < 0):
            raise ValueError(f"temperature must be > 0 and top_k >= 0 (0 = all tokens), got {temperature} and {top_k}")
        before = G.temperature, G.top_k
        G.temperature = before[0] if temperature is None else float(temperature)
        G.top_k = before[1] if top_k is None else int(top_k)
        try:
            yield
        finally:
            G.temperature, G.top_k = before

    def hold(self, z: torch.Tensor, part: str) -> torch.Tensor:
        """Copy clip 0's content (or motion) code to every clip of z."""
        if not hasattr(self.generator, "split_z"):
            raise ValueError(f"{self.config.model.name} does not separate content and motion; --hold needs mocogan")
        content, motion = self.generator.split_z(z)
        if part == "content":
            content = content[:1].expand_as(content)
        elif part == "motion":
            motion = motion[:1].expand_as(motion)
        else:
            raise ValueError(f"hold must be 'content' or 'motion', got {part!r}")
        return self.generator.join_z(content, motion)

    def _generate(
        self, z: torch.Tensor, cond: Condition | None, batch_size: int = 16, frames: int | None = None, times: torch.Tensor | None = None
    ) -> np.ndarray:
        n = len(z)
        extra = {} if frames is None else {"frames": frames}
        if times is not None:
            extra = {"times": times}
        out = []
        for i in range(0, n, batch_size):
            c = None if cond is None else cond[i : i + batch_size].to(self.device)
            out.append(to_uint8(self.generator(z[i : i + batch_size].to(self.device), c, **extra).float().cpu()))
        return np.concatenate(out)


def load_image(path: str | Path, size: int, channels: int = 3) -> np.ndarray:
    """An image file as uint8 (size, size, channels): shorter side resized to size (box filter), centre crop."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            w, h = im.size
            scale = size / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BOX)
            left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
            array = np.asarray(im.crop((left, top, left + size, top + size)))
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"{path}: not a readable image ({err}); pass a png or jpg file") from err
    return array.reshape(size, size, channels)


FORMATS = ("mp4", "gif", "webm", "png")


def save_clips(pipe: VideoPipeline, clips: np.ndarray, out: str | Path, fmt: str = "mp4", grid: bool = True) -> list[Path]:
    """Write each clip as OUT/clip_00000.FMT and, with `grid`, the grid.gif / grid.mp4 previews.
    (vidgan.generation writes the generated.json that says what they are.)"""
    from vidgan.data.video_write import write_grid, write_video

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_video(out / f"clip_{i:05d}.{fmt}", clip, fps=pipe.fps) for i, clip in enumerate(clips)]
    if grid:
        write_grid(out / "grid.gif", clips, fps=pipe.fps)
        write_grid(out / "grid.mp4", clips, fps=pipe.fps)
    return paths
