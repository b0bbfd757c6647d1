"""Prior Transformer (stage 2 of the two-stage generator) and the generator that joins both stages.

`Prior` is a decoder-only (GPT) Transformer over a VQ-VAE token grid (t, h, w) flattened in raster
order (time slowest). Input position j holds token j-1 plus the 3D position of token j (the sum of
learned t, h and w embeddings) and predicts token j; position 0 holds a learned start vector plus
the condition: a class / caption embedding (vidgan.models.layers.ConditionEncoder), or for
first-frame models a prefix of h*w tokens, the VQ-VAE tokens of the first frame held still for one
latent time-slice. Attention is torch's scaled_dot_product_attention; sampling keeps a KV cache
so each new token costs one position, and slides a window of the trained length along time to
make longer clips.

`TwoStageGenerator` looks like every other generator (vidgan.models.registry): G(z, cond, frames)
-> clips in [-1, 1], with z_dim = the number of tokens. Row z_i is turned into uniforms by the
normal CDF and token i is drawn by inverse-CDF sampling from them, so a clip is a pure function
of its noise row (independent of the batch), sampled with or without the cache alike.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidgan.config import TwoStageModelConfig, VQConfig
from vidgan.models.layers import Condition, ConditionEncoder
from vidgan.models.vqvae import VQVAE


class SelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd {n_embd} must be divisible by n_head {n_head}")
        self.n_head, self.dropout = n_head, dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        b, s, e = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.n_head, e // self.n_head).permute(2, 0, 3, 1, 4)
        if cache is not None:  # keys and values of the earlier positions, kept between calls
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        past = k.shape[2] - s
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        else:  # new positions see all cached ones and the new ones up to themselves
            mask = torch.ones(s, k.shape[2], dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(b, s, e))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = SelfAttention(n_embd, n_head, dropout)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


def sample_from_logits(logits: torch.Tensor, u: torch.Tensor, temperature: float = 1.0, top_k: int = 0) -> torch.Tensor:
    """(B, K) logits, (B,) uniforms in [0, 1) -> (B,) tokens by inverse-CDF sampling (deterministic given u)."""
    logits = logits.double() / max(temperature, 1e-8)
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    cdf = torch.softmax(logits, -1).cumsum(-1)
    token = torch.searchsorted(cdf, (u.double() * cdf[:, -1]).unsqueeze(1)).squeeze(1)
    return token.clamp_max(logits.shape[-1] - 1)


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """Token-by-token decoding is hundreds of tiny ops: on a CPU, thread hand-offs cost more than they
    save (measured: 2 threads 50-100x slower than 1 on a busy 2-core machine), so decode on one thread."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Prior(nn.Module):
    """GPT over a (t, h, w) token grid; see the module docstring."""

    def __init__(
        self,
        codebook_size: int,
        grid: tuple[int, int, int],
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.0,
        condition: str = "none",
        num_classes: int = 0,
        text_dim: int = 384,
    ):
        super().__init__()
        self.codebook_size, self.grid, self.condition = codebook_size, tuple(grid), condition
        t, h, w = self.grid
        self.tok_emb = nn.Embedding(codebook_size, n_embd)
        self.pos_t, self.pos_h, self.pos_w = nn.Embedding(t, n_embd), nn.Embedding(h, n_embd), nn.Embedding(w, n_embd)
        self.start = nn.Parameter(torch.zeros(n_embd))
        # class / caption -> a vector added to the start position; first-frame uses a token prefix instead
        self.cond = ConditionEncoder(condition if condition in ("class", "text") else "none", n_embd, num_classes, text_dim)
        self.prefix_pos = nn.Parameter(torch.zeros(n_embd)) if condition == "first-frame" else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, codebook_size, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by depth
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    @property
    def length(self) -> int:
        t, h, w = self.grid
        return t * h * w

    def pos(self, index: torch.Tensor) -> torch.Tensor:
        """Flat grid indices -> the sum of their t, h and w embeddings."""
        _, h, w = self.grid
        return self.pos_t(index // (h * w)) + self.pos_h((index // w) % h) + self.pos_w(index % w)

    def _head_of_sequence(self, b: int, cond: Condition | None, prefix: torch.Tensor | None) -> torch.Tensor:
        """(B, P + 1, E): the first-frame prefix (P = h*w tokens, or none) and the start position."""
        device = self.start.device
        start = (self.start + self.pos(torch.zeros(1, dtype=torch.long, device=device))).expand(b, 1, -1)
        c = self.cond(cond)
        if c is not None:
            start = start + c[:, None]
        if self.condition != "first-frame":
            return start
        if prefix is None:
            raise ValueError("this prior is first-frame-conditional: pass the first frame's tokens as prefix")
        hw = self.grid[1] * self.grid[2]
        spatial = self.pos(torch.arange(hw, device=device)) - self.pos_t.weight[0]  # h, w positions only
        return torch.cat([self.tok_emb(prefix) + spatial + self.prefix_pos, start], 1)

    def _trunk(self, x: torch.Tensor, caches: list[dict] | None = None) -> torch.Tensor:
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i])
        return self.head(self.ln_f(x))

    def forward(self, tokens: torch.Tensor, cond: Condition | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, L) flat grid tokens (L <= grid length) -> logits (B, L, K); logit j sees tokens < j only."""
        b, n = tokens.shape
        head = self._head_of_sequence(b, cond, prefix)
        idx = torch.arange(1, n, device=tokens.device)
        x = torch.cat([head, self.tok_emb(tokens[:, :-1]) + self.pos(idx)], 1)
        return self._trunk(x)[:, head.shape[1] - 1 :]

    def loss(self, tokens: torch.Tensor, cond: Condition | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
        logits = self(tokens, cond, prefix)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tokens.reshape(-1))

    @torch.no_grad()
    def sample(
        self,
        u: torch.Tensor,
        cond: Condition | None = None,
        prefix: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        temperature: float = 1.0,
        top_k: int = 0,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Tokens (B, L) of one grid: the given `context` tokens (B, m) first, then L - m tokens drawn with
        uniforms u (B, L - m). use_cache=False recomputes the whole sequence for every token (the reference)."""
        with _one_cpu_thread(u.device):
            return self._sample(u, cond, prefix, context, temperature, top_k, use_cache)

    def _sample(self, u, cond, prefix, context, temperature, top_k, use_cache) -> torch.Tensor:
        b = u.shape[0]
        tokens = torch.zeros(b, 0, dtype=torch.long, device=u.device) if context is None else context.long()
        m = tokens.shape[1]
        if u.shape[1] != self.length - m:
            raise ValueError(f"need {self.length - m} uniforms per clip for {self.length - m} tokens, got {u.shape[1]}")
        head = self._head_of_sequence(b, cond, prefix)
        if not use_cache:
            for j in range(m, self.length):
                x = torch.cat([head, self.tok_emb(tokens) + self.pos(torch.arange(1, j + 1, device=u.device))], 1)
                logits = self._trunk(x)[:, -1]
                tokens = torch.cat([tokens, sample_from_logits(logits, u[:, j - m], temperature, top_k)[:, None]], 1)
            return tokens
        caches: list[dict] = [{} for _ in self.blocks]
        x = torch.cat([head, self.tok_emb(tokens) + self.pos(torch.arange(1, m + 1, device=u.device))], 1)
        logits = self._trunk(x, caches)[:, -1]  # prefill: prefix, start and context in one pass
        for j in range(m, self.length):
            new = sample_from_logits(logits, u[:, j - m], temperature, top_k)
            tokens = torch.cat([tokens, new[:, None]], 1)
            if j + 1 < self.length:
                pos = torch.full((1,), j + 1, dtype=torch.long, device=u.device)
                logits = self._trunk((self.tok_emb(new) + self.pos(pos))[:, None], caches)[:, -1]
        return tokens


class TwoStageGenerator(nn.Module):
    """VQ-VAE decoder + Prior, with the GAN generators' interface: G(z, cond, frames) -> (B, C, T, H, W).

    z (B, z_dim) standard normal, one value per token; `frames` longer than trained slides the prior's
    window along time one latent slice at a time (each new slice sees the previous t - 1 slices).
    """

    def __init__(self, model_cfg, vq_cfg):
        super().__init__()
        self.vqvae = VQVAE.from_config(model_cfg, vq_cfg)
        self.frames = model_cfg.frames
        grid = self.vqvae.grid(model_cfg.frames, model_cfg.resolution, model_cfg.resolution)
        self.prior = Prior(
            vq_cfg.codebook_size,
            grid,
            vq_cfg.n_layer,
            vq_cfg.n_head,
            vq_cfg.n_embd,
            vq_cfg.dropout,
            model_cfg.condition,
            model_cfg.num_classes,
            model_cfg.text_dim,
        )
        self.z_dim = self.prior.length
        self.temperature, self.top_k, self.use_cache = vq_cfg.temperature, vq_cfg.top_k, True

    def latent_slices(self, frames: int) -> int:
        dt = self.vqvae.downsample[0]
        if frames < dt or frames % dt:
            raise ValueError(f"frames must be a positive multiple of the VQ-VAE's temporal downsampling {dt}, got {frames}")
        return frames // dt

    def z_dim_for(self, frames: int) -> int:
        t, h, w = self.prior.grid
        return self.z_dim + (self.latent_slices(frames) - t) * h * w

    @torch.no_grad()
    def first_frame_tokens(self, frame: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) frames in [-1, 1] -> (B, h*w) tokens of the frame held still for one latent slice."""
        dt = self.vqvae.downsample[0]
        return self.vqvae.encode(frame[:, :, None].expand(-1, -1, dt, -1, -1).contiguous())[:, 0].flatten(1)

    @torch.no_grad()
    def sample_tokens(self, z: torch.Tensor, cond: Condition | None = None, frames: int | None = None) -> torch.Tensor:
        """(B, z_dim_for(frames)) noise -> (B, t', h, w) tokens."""
        t, h, w = self.prior.grid
        slices = self.latent_slices(frames or self.frames)
        if z.shape[1] != self.z_dim_for(frames or self.frames):
            raise ValueError(f"noise of width {z.shape[1]} does not match {self.z_dim_for(frames or self.frames)} tokens")
        u = torch.special.ndtr(z.double()).clamp(0, 1 - 1e-12)
        prefix = None
        if self.prior.condition == "first-frame":
            if cond is None or cond.first_frame is None:
                raise ValueError("this model animates a given first frame: pass Condition(first_frame=...)")
            prefix = self.first_frame_tokens(cond.first_frame)
        opts = {"temperature": self.temperature, "top_k": self.top_k, "use_cache": self.use_cache}
        hw, window = h * w, min(t, slices)
        if window < t:  # shorter than trained: the first slices of a full window
            full = self.prior.sample(torch.cat([u, u.new_full((len(u), (t - window) * hw), 0.5)], 1), cond, prefix, **opts)
            return full[:, : window * hw].view(len(z), window, h, w)
        tokens = self.prior.sample(u[:, : t * hw], cond, prefix, **opts)
        for s in range(t, slices):  # sliding window: the newest t - 1 slices are the context of the next one
            u_s = u[:, s * hw : (s + 1) * hw]
            window_tokens = self.prior.sample(u_s, cond, prefix, context=tokens[:, -(t - 1) * hw :] if t > 1 else None, **opts)
            tokens = torch.cat([tokens, window_tokens[:, -hw:]], 1)
        return tokens.view(len(z), slices, h, w)

    def forward(self, z: torch.Tensor, cond: Condition | None = None, frames: int | None = None) -> torch.Tensor:
        return self.vqvae.decode(self.sample_tokens(z, cond, frames))


def build_videogpt(cfg: TwoStageModelConfig, vq: VQConfig) -> tuple[nn.Module, None]:
    """Stage 2: the token prior with the VQ-VAE that decodes its tokens (one generator module; no D)."""
    return TwoStageGenerator(cfg, vq), None
