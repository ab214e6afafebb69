"""A GPT written outside the project, in another style, for `python -m parity --twin`.

Its own names (tok_emb, layers.{i}.attn.query, ff.up, norm_out, head), separate q, k, v
projections, Dense layers that store their weight (in, out) and compute x @ W + b, the exact
(erf) GELU, nanoGPT's conventions (ignore index -1, only the last position's logits without
targets) and an untied head. NAME_MAP places the reference's tensors in it.

`make_gpt(config, bug=...)` plants one bug, to prove the suite catches and localises it:
    scale_n_embd   attention scores scaled by 1/sqrt(n_embd) instead of 1/sqrt(head size)
    mask_leak      the causal mask lets position t see position t + 1
    ln_eps         LayerNorm eps 1e-6
    no_residual    the attention branch replaces the residual stream instead of adding to it
    no_activation  the MLP without its GELU
    pos_slice      position embeddings of positions 1..T instead of 0..T-1
    tied_forward   the logits use tok_emb although the head has its own weight
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

BUGS = ("scale_n_embd", "mask_leak", "ln_eps", "no_residual", "no_activation", "pos_slice",
        "tied_forward")

NAME_MAP = {
    "names": {
        "transformer.wte": "tok_emb",
        "transformer.wpe": "pos_emb",
        "transformer.h.{i}.ln_1": "layers.{i}.norm1",
        "transformer.h.{i}.attn.c_attn": ["layers.{i}.attn.query", "layers.{i}.attn.key",
                                          "layers.{i}.attn.value"],
        "transformer.h.{i}.attn.c_proj": "layers.{i}.attn.out",
        "transformer.h.{i}.ln_2": "layers.{i}.norm2",
        "transformer.h.{i}.mlp.c_fc": "layers.{i}.ff.up",
        "transformer.h.{i}.mlp.c_proj": "layers.{i}.ff.down",
        "transformer.ln_f": "norm_out",
        "lm_head": "head",
    },
}


class Dense(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) / math.sqrt(n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, bug: str | None):
        super().__init__()
        self.query, self.key, self.value = Dense(dim, dim), Dense(dim, dim), Dense(dim, dim)
        self.out = Dense(dim, dim)
        self.heads, self.bug = heads, bug

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = (f(x).view(B, T, self.heads, -1).transpose(1, 2)
                   for f in (self.query, self.key, self.value))
        width = D if self.bug == "scale_n_embd" else D // self.heads
        scores = q @ k.transpose(-1, -2) / math.sqrt(width)
        hidden = torch.ones(T, T, dtype=torch.bool).triu(2 if self.bug == "mask_leak" else 1)
        weights = scores.masked_fill(hidden, float("-inf")).softmax(-1)
        return self.out((weights @ v).transpose(1, 2).reshape(B, T, D))


class FeedForward(nn.Module):
    def __init__(self, dim: int, bug: str | None):
        super().__init__()
        self.up, self.down, self.bug = Dense(dim, 4 * dim), Dense(4 * dim, dim), bug

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        return self.down(h if self.bug == "no_activation" else F.gelu(h))


class Layer(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float, bug: str | None):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.attn, self.ff, self.bug = Attention(dim, heads, bug), FeedForward(dim, bug), bug

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn(self.norm1(x))
        x = a if self.bug == "no_residual" else x + a
        return x + self.ff(self.norm2(x))


class OutsideGPT(nn.Module):
    def __init__(self, vocab: int, context: int, depth: int, heads: int, dim: int,
                 bug: str | None = None):
        super().__init__()
        eps = 1e-6 if bug == "ln_eps" else 1e-5
        self.tok_emb, self.pos_emb = nn.Embedding(vocab, dim), nn.Embedding(context, dim)
        self.layers = nn.ModuleList(Layer(dim, heads, eps, bug) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim, eps=eps)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.bug = bug

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None):
        T = tokens.size(1)
        start = 1 if self.bug == "pos_slice" else 0
        x = self.tok_emb(tokens) + self.pos_emb(torch.arange(start, start + T))
        for layer in self.layers:
            x = layer(x)
        x = self.norm_out(x)
        head = (lambda x: x @ self.tok_emb.weight.T) if self.bug == "tied_forward" else self.head
        if targets is None:
            return head(x[:, [-1]]), None  # nanoGPT: only the last position
        logits = head(x)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
        return logits, loss


def make_gpt(config, bug: str | None = None) -> OutsideGPT:
    """The factory `--twin tests/outside_gpt.py:make_gpt` calls with the suite's GPTConfig."""
    return OutsideGPT(config.vocab_size, config.block_size, config.n_layer, config.n_head,
                      config.n_embd, bug)
