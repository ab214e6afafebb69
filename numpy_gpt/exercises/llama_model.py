"""The "llama" exercise: the whole Llama-shaped backward, written with the learner's own layers.

The learner's llama.py (template_llama.py) composes their rmsnorm, rope, gqa, swiglu, linear,
embedding and cross_entropy files into a Llama-shaped model (RMSNorm, RoPE on q and k,
grouped-query attention, SwiGLU MLP, no biases, untied head) and writes llama_backward.
modelcheck.py compares every gradient with numpy_gpt.GPT.backward on CONFIG's model.

What is wrong is named when it is a known model-level mistake: below, the same model is run
forward with the package's layers, composed as the learner's file composes them, and its
backward is computed with each mistake switched on (the MLP input's gate or up path dropped,
dq and dk not turned back or turned by +θ, v's gradient turned too, the head's dw added to
wte as if tied). tests/exercises checks that, with nothing switched on, it is GPT.backward.
"""

from __future__ import annotations

import numpy as np

from ..nn.config import GPTConfig
from ..nn.layers import (
    attention_backward,
    attention_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    linear_backward,
    linear_forward,
    rmsnorm_backward,
    rmsnorm_forward,
    rope_forward,
    rope_tables,
    swiglu_backward,
    swiglu_forward,
)
from ..nn.model import GPT
from .catalog import LLAMA_NAME
from .spec import ModelSpec

# Shapes that all differ: V=11, C=16, F=20, (NH + 2 KV) hs = 32; 4 query heads, 2 K/V heads
CONFIG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_embd=16,
                   norm="rmsnorm", position="rope", rope_layout="halves", mlp="swiglu",
                   ffn_hidden=20, n_kv_head=2, bias=False, tie_weights=False)
LAYERS = ("linear", "cross_entropy", "embedding", "rmsnorm", "rope", "swiglu", "gqa")
WTE = "transformer.wte.weight"


def llama_cases(rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray]]:
    idx = np.array([[1, 4, 1, 7, 9], [4, 4, 0, 10, 2]])  # repeated ids
    targets = rng.integers(0, CONFIG.vocab_size, idx.shape)
    targets[1, 2] = -100  # an ignored target
    return [("B=2 T=5, repeated ids, 1 ignored target", idx, targets),
            ("B=1 T=1", np.array([[5]]), np.array([[3]]))]


def reference_forward(params: dict, idx: np.ndarray, targets: np.ndarray,
                      cfg: GPTConfig = CONFIG) -> tuple:
    """The Llama forward from the package's layers, composed as the learner's llama.py."""
    P = params
    B, T = idx.shape
    NH, KV, hs = cfg.n_head, cfg.kv_heads, cfg.head_size
    QK = (NH + KV) * hs
    cos, sin = rope_tables(T, hs, float(cfg.rope_theta), np.dtype(np.float64))
    x = P[WTE][idx]
    blocks = []
    for i in range(cfg.n_layer):
        h = f"transformer.h.{i}."
        a, ln_1 = rmsnorm_forward(x, P[h + "ln_1.weight"], cfg.layer_norm_eps)
        a, c_attn = linear_forward(a, P[h + "attn.c_attn.weight"], None)
        qk, rope = rope_forward(a[..., :QK].reshape(B, T, NH + KV, hs), cos[:, None],
                                sin[:, None], cfg.rope_layout)
        a = np.concatenate([qk.reshape(B, T, QK), a[..., QK:]], axis=-1)
        a, attn = attention_forward(a, NH, n_kv_head=KV)
        a, attn_proj = linear_forward(a, P[h + "attn.c_proj.weight"], None)
        x = x + a
        m, ln_2 = rmsnorm_forward(x, P[h + "ln_2.weight"], cfg.layer_norm_eps)
        g, c_gate = linear_forward(m, P[h + "mlp.c_gate.weight"], None)
        u, c_fc = linear_forward(m, P[h + "mlp.c_fc.weight"], None)
        m, act = swiglu_forward(g, u)
        m, mlp_proj = linear_forward(m, P[h + "mlp.c_proj.weight"], None)
        x = x + m
        blocks.append((ln_1, c_attn, rope, attn, attn_proj, ln_2, c_gate, c_fc, act, mlp_proj))
    x, ln_f = rmsnorm_forward(x, P["transformer.ln_f.weight"], cfg.layer_norm_eps)
    logits, lm_head = linear_forward(x, P["lm_head.weight"], None)
    _, loss_cache = cross_entropy_forward(logits, targets)
    return idx, P[WTE].shape, blocks, ln_f, lm_head, loss_cache


def reference_backward(fwd: tuple, cfg: GPTConfig = CONFIG, *, gate_path: bool = True,
                       up_path: bool = True, rope_turn: str = "-theta",
                       tied: bool = False) -> dict[str, np.ndarray]:
    """reference_forward's backward; a switch plants one mistake. rope_turn: "-theta" (right),
    "+theta" (rope_forward where rope_backward belongs), "none" (dq, dk not turned back),
    "with v" (v's gradient turned as well)."""
    idx, wte_shape, blocks, ln_f, lm_head, loss_cache = fwd
    NH, KV, hs = cfg.n_head, cfg.kv_heads, cfg.head_size
    QK = (NH + KV) * hs
    grads = {}
    dx, dhead, _ = linear_backward(cross_entropy_backward(loss_cache), lm_head)
    grads["lm_head.weight"] = dhead
    dx, grads["transformer.ln_f.weight"] = rmsnorm_backward(dx, ln_f)
    for i in reversed(range(cfg.n_layer)):
        h = f"transformer.h.{i}."
        ln_1, c_attn, rope, attn, attn_proj, ln_2, c_gate, c_fc, act, mlp_proj = blocks[i]
        dm, grads[h + "mlp.c_proj.weight"], _ = linear_backward(dx, mlp_proj)
        dg, du = swiglu_backward(dm, act)
        dm_up, grads[h + "mlp.c_fc.weight"], _ = linear_backward(du, c_fc)
        dm_gate, grads[h + "mlp.c_gate.weight"], _ = linear_backward(dg, c_gate)
        dm = up_path * dm_up + gate_path * dm_gate  # m fans out into c_gate and c_fc
        dm, grads[h + "ln_2.weight"] = rmsnorm_backward(dm, ln_2)
        dx = dx + dm
        da, grads[h + "attn.c_proj.weight"], _ = linear_backward(dx, attn_proj)
        da = attention_backward(da, attn)
        B, T, _ = da.shape
        if rope_turn != "none":
            cos, sin, layout = rope
            sign = 1.0 if rope_turn == "+theta" else -1.0
            turned = QK + (KV * hs if rope_turn == "with v" else 0)
            heads = da[..., :turned].reshape(B, T, turned // hs, hs)
            da[..., :turned] = rope_forward(heads, cos, sign * sin, layout)[0].reshape(
                B, T, turned)
        da, grads[h + "attn.c_attn.weight"], _ = linear_backward(da, c_attn)
        da, grads[h + "ln_1.weight"] = rmsnorm_backward(da, ln_1)
        dx = dx + da
    dwte = np.zeros(wte_shape)
    np.add.at(dwte, idx.reshape(-1), dx.reshape(-1, wte_shape[1]))
    grads[WTE] = dwte + dhead if tied else dwte
    return grads


MISTAKES = (
    ({"gate_path": False}, "the MLP's input m = rmsnorm_2(x) fans out into c_gate and c_fc: "
                           "its gradient is the sum of both Linears' dx (the gate path's "
                           "is missing)"),
    ({"up_path": False}, "the MLP's input m = rmsnorm_2(x) fans out into c_gate and c_fc: its "
                         "gradient is the sum of both Linears' dx (the up path's, c_fc, is "
                         "missing)"),
    ({"rope_turn": "none"}, "dq and dk were not turned back: the forward turned q and k after "
                            "c_attn, so their gradients go through rope_backward (R(-θ)) "
                            "before c_attn's backward"),
    ({"rope_turn": "+theta"}, "dq and dk turned by +θ (rope_forward) after the attention's "
                              "backward: the backward is rope_backward, the turn by -θ"),
    ({"rope_turn": "with v"}, "v's gradient was turned too: RoPE turns q and k only, so only "
                              "the first (NH + KV) hs columns of dqkv go through "
                              "rope_backward"),
    ({"tied": True}, "wte has the output head's gradient too: Llama's head is untied "
                     "(lm_head.weight is its own parameter), so wte gets the embedding's only"),
)


def llama_known(model: GPT, idx: np.ndarray, targets: np.ndarray, cache, want: dict
                ) -> dict[str, list]:
    """Each parameter's value under each planted mistake (MISTAKES), on this case."""
    fwd = reference_forward(model.params, idx, targets, model.config)
    known: dict[str, list] = {}
    for switches, message in MISTAKES:
        for name, value in reference_backward(fwd, model.config, **switches).items():
            known.setdefault(name, []).append((message, value))
    return known


def _dims(B: int, T: int) -> dict[str, int]:
    c = CONFIG
    return {"B": B, "T": T, "V": c.vocab_size, "C": c.n_embd, "F": c.ffn_width,
            "(NH+2KV)hs": (c.n_head + 2 * c.kv_heads) * c.head_size}


LLAMA_MODEL = ModelSpec(
    LLAMA_NAME, "llama_forward", "llama_backward", CONFIG,
    (CONFIG.n_layer, CONFIG.n_head, CONFIG.kv_heads, CONFIG.rope_theta, CONFIG.rope_layout,
     CONFIG.layer_norm_eps), llama_cases, llama_known, _dims, LAYERS)
