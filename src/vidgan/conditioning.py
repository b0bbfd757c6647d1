"""Conditions from data: what a conditional model is trained and previewed with.

A model's `condition` kind says which field of a Condition (vidgan.models.layers) it reads:
"class" the clip's label, "text" its caption's sentence embedding, "first-frame" its frame 0.
"""

from __future__ import annotations

import torch

from vidgan.data.clips import ClipDataset
from vidgan.data.video_io import to_model
from vidgan.models.layers import Condition


def caption_embeddings(data: ClipDataset) -> torch.Tensor:
    """(N, 384) sentence embeddings of every clip's caption, for text-conditional training."""
    from vidgan.text import embed_captions  # transformers: only for text-conditional models

    captions = [c.get("caption") for c in data.clips]
    missing = sum(c is None for c in captions)
    if missing:
        raise ValueError(
            f"{data.root}: {missing} of {len(captions)} clips have no caption; text conditioning needs captions "
            "(captions.json or VIDEO.txt beside each video when preparing, or builtin:shapes)"
        )
    return embed_captions(captions)


def default_labels(n: int, num_classes: int) -> torch.Tensor:
    """The labels of n clips generated without asking for a class: every class in turn (0, 1, ..., 0, 1, ...).
    Sample grids, `vidgan generate` and evaluation use this rule (and the library's provenance records it)."""
    return torch.arange(n) % max(1, num_classes)


def make_condition(
    kind: str, labels: torch.Tensor | None = None, first_frames: torch.Tensor | None = None, text: torch.Tensor | None = None
) -> Condition | None:
    """The Condition a model of this kind reads: labels (B,), first frames (B, C, H, W) in [-1, 1], or
    sentence embeddings (B, text_dim). Training, sampling and evaluation all build theirs here."""
    if kind == "none":
        return None
    if kind == "class":
        return Condition(labels=labels)
    if kind == "first-frame":
        return Condition(first_frame=first_frames)
    if kind == "text":
        return Condition(text=text)
    raise ValueError(f"unknown condition {kind!r}; use none, class, text or first-frame")


def batch_condition(
    kind: str, real: torch.Tensor | None, labels: torch.Tensor | None, text: torch.Tensor | None = None
) -> Condition | None:
    """The Condition of a batch of real clips (B, C, T, H, W) with their labels and caption embeddings."""
    return make_condition(kind, labels, None if real is None or kind != "first-frame" else real[:, :, 0], text)


def reference_batch(kind: str, data: ClipDataset, n: int, text_table: torch.Tensor | None) -> tuple[torch.Tensor, Condition | None]:
    """The real clips and conditions of the fixed-noise sample grids: the dataset's first n clips
    (cycling when it has fewer), and for class-conditional models every class in turn."""
    index = [i % len(data) for i in range(n)]
    clips, labels = data.get_batch(index)
    real = to_model(clips)
    if kind == "class":
        labels = default_labels(n, data.num_classes)
    return real, batch_condition(kind, real, labels, None if text_table is None else text_table[index])
