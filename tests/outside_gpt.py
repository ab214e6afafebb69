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
    gelu_backward  a hand-written GELU backward 0.1 % off (the forward is right)

GPTLanguageModel below is a second outside style: the model of Karpathy's "Let's build GPT"
lecture (one Linear per head, ReLU, a biased lm_head), placed by LECTURE_MAP.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

BUGS = ("scale_n_embd", "mask_leak", "ln_eps", "no_residual", "no_activation", "pos_slice",
        "tied_forward", "gelu_backward")

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


class WrongGeluBackward(torch.autograd.Function):
    """The exact GELU with its gradient scaled by 1.001: a backward bug, forward intact."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return F.gelu(x)

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            (dx,) = torch.autograd.grad(F.gelu(x), x, dout)
        return dx * 1.001


class FeedForward(nn.Module):
    def __init__(self, dim: int, bug: str | None):
        super().__init__()
        self.up, self.down, self.bug = Dense(dim, 4 * dim), Dense(4 * dim, dim), bug

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        if self.bug == "gelu_backward":
            return self.down(WrongGeluBackward.apply(h))
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


# ---------------------------------------------------------------------- "Let's build GPT"
# The model of Karpathy's lecture gpt.py (sizes passed in instead of globals): one Linear per
# head and per q/k/v without bias, a biased output projection and lm_head, ReLU in the MLP,
# logits flattened to (B*T, V) when targets are given. LECTURE_MAP places it: "{h}" for the
# heads, null for the q/k/v biases it does not have, "zero" for lm_head's bias.

LECTURE_MAP = {
    "names": {
        "transformer.wte": "token_embedding_table",
        "transformer.wpe": "position_embedding_table",
        "transformer.h.{i}.ln_1": "blocks.{i}.ln1",
        "transformer.h.{i}.attn.c_attn.weight": [f"blocks.{{i}}.sa.heads.{{h}}.{x}.weight"
                                                 for x in ("query", "key", "value")],
        "transformer.h.{i}.attn.c_attn.bias": None,
        "transformer.h.{i}.attn.c_proj": "blocks.{i}.sa.proj",
        "transformer.h.{i}.ln_2": "blocks.{i}.ln2",
        "transformer.h.{i}.mlp.c_fc": "blocks.{i}.ffwd.net.0",
        "transformer.h.{i}.mlp.c_proj": "blocks.{i}.ffwd.net.2",
    },
    "zero": ["lm_head.bias"],
}


class Head(nn.Module):
    def __init__(self, n_embd: int, head_size: int, block_size: int):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        k, q = self.key(x), self.query(x)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
        wei = F.softmax(wei.masked_fill(self.tril[:T, :T] == 0, float("-inf")), dim=-1)
        return wei @ self.value(x)


class MultiHeadAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int):
        super().__init__()
        self.heads = nn.ModuleList(Head(n_embd, n_embd // n_head, block_size)
                                   for _ in range(n_head))
        self.proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([h(x) for h in self.heads], dim=-1))


class LectureBlock(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int, act: nn.Module):
        super().__init__()
        self.sa = MultiHeadAttention(n_embd, n_head, block_size)
        self.ffwd = nn.Module()
        self.ffwd.net = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), act,
                                      nn.Linear(4 * n_embd, n_embd))
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.sa(self.ln1(x))
        return x + self.ffwd.net(self.ln2(x))


class GPTLanguageModel(nn.Module):
    def __init__(self, config, act: nn.Module | None = None):
        super().__init__()
        C, V = config.n_embd, config.vocab_size
        self.token_embedding_table = nn.Embedding(V, C)
        self.position_embedding_table = nn.Embedding(config.block_size, C)
        self.blocks = nn.Sequential(*(LectureBlock(C, config.n_head, config.block_size,
                                                   act or nn.ReLU())
                                      for _ in range(config.n_layer)))
        self.ln_f, self.lm_head = nn.LayerNorm(C), nn.Linear(C, V)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, T = idx.shape
        x = self.token_embedding_table(idx) + self.position_embedding_table(torch.arange(T))
        logits = self.lm_head(self.ln_f(self.blocks(x)))
        if targets is None:
            return logits, None
        logits = logits.view(B * T, -1)
        return logits, F.cross_entropy(logits, targets.view(B * T))
