"""Public sampling API: `VideoPipeline.from_pretrained(run_dir)(n=4, seed=0)` -> uint8 clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from vidgan.config import RunConfig
from vidgan.data.video_io import to_uint8
from vidgan.models.registry import build_model
from vidgan.training import checkpoint as ckpt


class VideoPipeline:
    """A trained generator and the config it was built from.

    `from_pretrained` accepts a run dir (its newest checkpoint), a run dir plus `step`, one
    checkpoint folder, or a folder written by `save_pretrained` (config.json + generator.safetensors).
    """

    def __init__(self, generator: torch.nn.Module, config: RunConfig, source: str = "", step: int | None = None):
        self.generator = generator.eval()
        self.config = config
        self.source, self.step = source, step

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def fps(self) -> float:
        return self.config.model.fps

    @classmethod
    def from_pretrained(cls, path: str | Path, step: int | None = None, ema: bool = True, device: str | torch.device = "cpu") -> VideoPipeline:
        path = Path(path)
        if (path / "generator.safetensors").is_file() and (path / "config.json").is_file() and not (path / "state.json").is_file():
            config_path, weights_dir, name, at = path / "config.json", path, "generator", None
        else:
            if (path / "state.json").is_file():  # one checkpoint folder: RUN/checkpoints/step_*
                weights_dir = path
            elif step is not None:
                weights_dir = ckpt.checkpoint_dir(path, step)
                if not weights_dir.is_dir():
                    have = ", ".join(p.name for p in ckpt.list_checkpoints(path)) or "none"
                    raise ckpt.CheckpointError(f"{path}: no checkpoint for step {step} (have: {have})")
            else:
                weights_dir = ckpt.latest_checkpoint(path)
                if weights_dir is None:
                    raise ckpt.CheckpointError(f"{path}: no checkpoint found; train it first (`vidgan train DATA --out {path}`)")
            config_path = weights_dir.parent.parent / "config.json"
            name = "generator_ema" if ema else "generator"
            at = int(weights_dir.name.split("_")[-1])
        if not config_path.is_file():
            raise ckpt.CheckpointError(f"{config_path}: missing; a run dir needs the config.json it was trained with")
        config = RunConfig.load(config_path)
        generator, _ = build_model(config.model)
        generator.load_state_dict(ckpt.load_weights(weights_dir, name))
        return cls(generator.to(device), config, source=str(weights_dir), step=at)

    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save(path / "config.json")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.generator.state_dict().items()}, str(path / "generator.safetensors"))
        return path

    def noise(self, n: int, seed: int) -> torch.Tensor:
        return torch.randn(n, self.generator.z_dim, generator=torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def __call__(self, n: int = 4, seed: int = 0, batch_size: int = 16) -> np.ndarray:
        """n clips as uint8 (n, T, H, W, C); the same seed always gives the same clips."""
        z = self.noise(n, seed)
        out = [to_uint8(self.generator(z[i : i + batch_size].to(self.device)).float().cpu()) for i in range(0, n, batch_size)]
        return np.concatenate(out)


FORMATS = ("mp4", "gif", "webm", "png")


def save_clips(pipe: VideoPipeline, clips: np.ndarray, out: str | Path, fmt: str = "mp4", seed: int = 0, grid: bool = True) -> list[Path]:
    """Write each clip as OUT/clip_00000.FMT, a grid preview, and generated.json with provenance."""
    import json

    from vidgan.data.video_io import write_grid, write_video

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_video(out / f"clip_{i:05d}.{fmt}", clip, fps=pipe.fps) for i, clip in enumerate(clips)]
    if grid:
        write_grid(out / "grid.gif", clips, fps=pipe.fps)
        write_grid(out / "grid.mp4", clips, fps=pipe.fps)
    manifest = {
        "source": pipe.source,
        "step": pipe.step,
        "model": pipe.config.model.name,
        "seed": seed,
        "clips": [{"file": p.name, "index": i} for i, p in enumerate(paths)],
        "note": "clip i is sample i of VideoPipeline(n=len(clips), seed=seed)",
    }
    (out / "generated.json").write_text(json.dumps(manifest, indent=1))
    return paths
