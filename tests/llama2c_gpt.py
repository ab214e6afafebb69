"""A Llama written outside the project in llama2.c's style, for `python -m parity --twin`.

Meta's / llama2.c's names (tok_embeddings, layers.{i}.attention.wq/wk/wv/wo, feed_forward.w1/
w2/w3, attention_norm, ffn_norm, norm, output), interleaved RoPE (complex pairs), grouped-query
attention by repeat_kv, an output layer tied to the embedding, and llama2.c's conventions: the
forward returns logits only and keeps the loss in `self.last_loss` (ignore index -1), and
without targets returns the last position's logits. No name map is needed to place it.

`make_llama(config, bug=...)`: "halves" turns RoPE pairs as Hugging Face does instead;
"layernorm" normalises with LayerNorm (mean removed) instead of RMSNorm; "no_loss" keeps no
loss at all (the harness computes it from the logits).
Ref: karpathy/llama2.c model.py (Transformer, Attention, FeedForward, apply_rotary_emb).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

BUGS = ("halves", "layernorm", "no_loss")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, layernorm: bool = False):
        super().__init__()
        self.eps, self.layernorm = eps, layernorm
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layernorm:
            return F.layer_norm(x, (x.size(-1),), self.weight, None, self.eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def apply_rotary_emb(x: torch.Tensor, theta: float, halves: bool) -> torch.Tensor:
    """x (B, T, H, hs) turned by position: llama2.c's complex pairs (x[2i], x[2i+1])."""
    T, hs = x.size(1), x.size(-1)
    freqs = 1.0 / theta ** (torch.arange(0, hs, 2, dtype=x.dtype) / hs)
    angles = torch.outer(torch.arange(T, dtype=x.dtype), freqs)[None, :, None]  # (1,T,1,hs/2)
    if halves:
        a, b = x.chunk(2, dim=-1)
    else:
        a, b = x[..., 0::2], x[..., 1::2]
    ra, rb = a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()
    return torch.cat((ra, rb), -1) if halves else torch.stack((ra, rb), -1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg, bug: str | None):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.hs = cfg.n_head, cfg.kv_heads, cfg.head_size
        self.theta, self.halves = cfg.rope_theta, bug == "halves"
        C = cfg.n_embd
        self.wq = nn.Linear(C, self.n_heads * self.hs, bias=False)
        self.wk = nn.Linear(C, self.n_kv_heads * self.hs, bias=False)
        self.wv = nn.Linear(C, self.n_kv_heads * self.hs, bias=False)
        self.wo = nn.Linear(self.n_heads * self.hs, C, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.hs)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.hs)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.hs)
        q, k = (apply_rotary_emb(t, self.theta, self.halves) for t in (q, k))
        rep = self.n_heads // self.n_kv_heads  # repeat_kv
        k, v = (t.repeat_interleave(rep, dim=2) for t in (k, v))
        y = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)),
                                           is_causal=True)
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, cfg, bug: str | None):
        super().__init__()
        ln = bug == "layernorm"
        self.attention = Attention(cfg, bug)
        self.feed_forward = FeedForward(cfg.n_embd, cfg.ffn_width)
        self.attention_norm = RMSNorm(cfg.n_embd, cfg.layer_norm_eps, ln)
        self.ffn_norm = RMSNorm(cfg.n_embd, cfg.layer_norm_eps, ln)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x))
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    last_loss: torch.Tensor | None

    def __init__(self, cfg, bug: str | None = None):
        super().__init__()
        self.keep_loss = bug != "no_loss"
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.layers = nn.ModuleList(TransformerBlock(cfg, bug) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.layer_norm_eps, bug == "layernorm")
        self.output = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.tok_embeddings.weight = self.output.weight  # weight tying, as llama2.c
        self.last_loss = None

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None
                ) -> torch.Tensor:
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        h = self.norm(h)
        if targets is not None:
            logits = self.output(h)
            if self.keep_loss:
                self.last_loss = F.cross_entropy(logits.view(-1, logits.size(-1)),
                                                 targets.view(-1), ignore_index=-1)
            return logits
        self.last_loss = None
        return self.output(h[:, [-1], :])  # inference: the last position only


def make_llama(config, bug: str | None = None) -> Transformer:
    """The factory `--twin tests/llama2c_gpt.py:make_llama` calls with the suite's config."""
    if bug not in (None, *BUGS):
        raise ValueError(f"unknown bug {bug!r}; one of {BUGS}")
    return Transformer(config, bug)
