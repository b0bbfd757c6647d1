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


def batch_condition(
    kind: str, real: torch.Tensor | None, labels: torch.Tensor | None, text: torch.Tensor | None = None
) -> Condition | None:
    """The Condition of a batch of real clips (B, C, T, H, W) with their labels and caption embeddings."""
    if kind == "none":
        return None
    if kind == "class":
        return Condition(labels=labels)
    if kind == "first-frame":
        return Condition(first_frame=real[:, :, 0])
    if kind == "text":
        return Condition(text=text)
    raise ValueError(f"unknown condition {kind!r}; use none, class, text or first-frame")


def reference_batch(kind: str, data: ClipDataset, n: int, text_table: torch.Tensor | None) -> tuple[torch.Tensor, Condition | None]:
    """The real clips and conditions of the fixed-noise sample grids: the dataset's first n clips
    (cycling when it has fewer), and for class-conditional models every class in turn."""
    index = [i % len(data) for i in range(n)]
    clips, labels = data.get_batch(index)
    real = to_model(clips)
    if kind == "class":
        labels = torch.arange(n) % max(1, data.num_classes)
    return real, batch_condition(kind, real, labels, None if text_table is None else text_table[index])
