"""Graded hints: level 1 is a nudge, level 2 the shapes and the plan, level 3 the equations.

`exercise hint NAME --level K` shows levels 1..K. Level 3 is what docs/backprop.md derives;
the learner never needs to open numpy_gpt/nn/layers to finish.
"""

from __future__ import annotations

HINTS: dict[str, tuple[str, str, str]] = {
    "linear": (
        "Start with one row: y = x Wᵀ + b for a single vector x. Which entries of W does y_i "
        "depend on? Then remember that every row of a batch uses the same W and b.",
        "Flatten the leading axes: x2 = x.reshape(-1, in), d2 = dout.reshape(-1, out). dx has "
        "x's shape (..., in), dw has w's shape (out, in), db has b's shape (out,). Let the "
        "shapes tell you which matrix to transpose.",
        "dx = dout @ w   (reshaped back to x.shape)\n"
        "dw = d2.T @ x2   (out, N) @ (N, in): a sum over all N = B*T rows\n"
        "db = d2.sum(axis=0), or None when has_bias is False",
    ),
    "layernorm": (
        "Do the easy ones first: y = w * n + b is elementwise in n, so db and dw are sums over "
        "the rows (B and T). The hard one is dx: x reaches n directly, through the mean, and "
        "through the variance.",
        "Call g = dout * w the gradient wrt n. dx is rstd times g minus two corrections, each "
        "a mean over the last axis (keepdims=True so it broadcasts): one for the mean, one "
        "for the variance. n and rstd are in the cache; you need nothing else.",
        "db = dout.sum(axis=(0, 1));  dw = (dout * n).sum(axis=(0, 1));  g = dout * w\n"
        "dx = rstd * (g - g.mean(-1, keepdims=True) - n * (g * n).mean(-1, keepdims=True))\n"
        "(term 1 direct, term 2 through the mean, term 3 through the variance: "
        "d var / d x_i = 2 (x_i - mean) / C)",
    ),
    "gelu": (
        "GELU is elementwise, so dx = dout * dy/dx: find the derivative of one number. "
        "Product rule: y = 0.5 x (1 + t), and t depends on x too.",
        "dy/dx = 0.5 (1 + t) + 0.5 x dt/dx, and dt/dx = (1 - t²) du/dx with "
        "u = S (x + A x³). t is in the cache.",
        "dudx = S * (1 + 3 * A * x**2)\n"
        "dx = dout * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * dudx)",
    ),
    "cross_entropy": (
        "Don't differentiate the softmax and the log separately: together, the gradient of "
        "-log softmax(z)[target] wrt z is strikingly simple. Try it for V = 2 on paper.",
        "Per counted row: probabilities minus a one-hot of the target. Then the mean: divide "
        "by n_valid (not N). Ignored rows get 0. Multiply by dloss. Reshape to cache.shape.",
        "d = probs.copy();  rows = np.flatnonzero(valid)\n"
        "d[rows, targets[rows]] -= 1;  d[~valid] = 0\n"
        "dlogits = (d * dloss / n_valid).reshape(shape)",
    ),
    "attention": (
        "Go backwards one line at a time: the head merge, y = P v, the softmax, "
        "S = q kᵀ * scale. Two matrix products each give two gradients.",
        "Undo the merge: dy = dout.reshape(B, T, NH, hs).transpose(0, 2, 1, 3). From y = P v: "
        "dP and dv. Softmax backward row by row (its Jacobian is diag(P) - P Pᵀ). From S: dq "
        "and dk, times scale. Finally merge each of dq, dk, dv back to (B, T, C) and "
        "concatenate them on the last axis.",
        "dv = P.swapaxes(-1, -2) @ dy;   dP = dy @ v.swapaxes(-1, -2)\n"
        "dS = P * (dP - (dP * P).sum(-1, keepdims=True))\n"
        "dq = dS @ k * scale;   dk = dS.swapaxes(-1, -2) @ q * scale\n"
        "merge(z) = z.transpose(0, 2, 1, 3).reshape(B, T, C);  "
        "dqkv = np.concatenate([merge(dq), merge(dk), merge(dv)], -1)",
    ),
    "embedding": (
        "x[b, t] copies row idx[b, t] of wte. So the gradient of that row receives dout[b, t]. "
        "What if the same id appears twice?",
        "Start both gradients at zeros with the parameters' full shapes (vocab_size, C) and "
        "(block_size, C). dwpe[t] sums over the batch. For dwte, a plain fancy assignment "
        "dwte[idx] = ... keeps only one of the repeated ids: you need an unbuffered add.",
        "C = dout.shape[-1];  T = dout.shape[1]\n"
        "dwte = np.zeros((vocab_size, C));  np.add.at(dwte, idx.reshape(-1), "
        "dout.reshape(-1, C))\n"
        "dwpe = np.zeros((block_size, C));  dwpe[:T] = dout.sum(axis=0)",
    ),
    "dropout": (
        "y = x * mask * scale is elementwise multiplication by constants.",
        "A dropped unit did not reach y, so it gets no gradient; a kept one is scaled.",
        "dx = dout * mask * scale",
    ),
    "residual": (
        "x is used twice: once by the skip path, once by the branch. What happens to a "
        "gradient when a value fans out?",
        "Add the gradients of both uses. The branch is a Linear layer: reuse your linear "
        "exercise's equations for dx, dw and db.",
        "dx = dout + dout @ w   (skip path + branch)\n"
        "dw = dout.reshape(-1, C).T @ x.reshape(-1, C);  db = dout.reshape(-1, C).sum(axis=0)",
    ),
    "model": (
        "Read gpt_forward from the bottom up and call the matching backward of each line, in "
        "exact reverse order. Where a value was used twice, add the two gradients.",
        "Start with cross_entropy_backward(cache.loss), then the head (linear_backward with no "
        "bias; its dw belongs to wte), ln_f, then the blocks from the last to the first. In a "
        "block: the residual stream's gradient dx goes both into the MLP branch and straight "
        "through, so after the branch dx = dx + (the branch's dx); the same for attention. "
        "Finally embedding_backward, and add the head's dw to dwte (weight tying).",
        "dlogits = cross_entropy_backward(cache.loss)\n"
        "dx, dhead, _ = linear_backward(dlogits, cache.lm_head)\n"
        "dx, g['transformer.ln_f.weight'], g['transformer.ln_f.bias'] = "
        "layernorm_backward(dx, cache.ln_f)\n"
        "for i in reversed(range(len(cache.blocks))): c = cache.blocks[i]; h = "
        "f'transformer.h.{i}.'\n"
        "    dm, g[h+'mlp.c_proj.weight'], g[h+'mlp.c_proj.bias'] = "
        "linear_backward(dx, c.mlp_proj)\n"
        "    dm = gelu_tanh_backward(dm, c.gelu); then c_fc, then ln_2;  dx = dx + dm\n"
        "    da: attn.c_proj, attention_backward, attn.c_attn, ln_1 the same way;  dx = dx + da\n"
        "dwte, g['transformer.wpe.weight'] = embedding_backward(dx, cache.emb)\n"
        "g['transformer.wte.weight'] = dwte + dhead",
    ),
    "rmsnorm": (
        "Like LayerNorm, but there is no mean: dw is a sum over the rows (B and T), and x "
        "reaches n = x * rstd directly and through rstd, the root mean square of its row. "
        "How many terms does dx have, then?",
        "Call g = dout * w the gradient wrt n. d rstd / d x_i = -rstd³ x_i / C = -rstd² n_i / C. "
        "So dx is rstd times g minus one correction, a mean over the last axis "
        "(keepdims=True). n and rstd are in the cache.",
        "dw = (dout * n).sum(axis=(0, 1));  g = dout * w\n"
        "dx = rstd * (g - n * (g * n).mean(-1, keepdims=True))\n"
        "(LayerNorm's dx without its - mean(g) term: no mean was subtracted)",
    ),
    "rope": (
        "RoPE is linear in x: each pair (a, b) is multiplied by a 2x2 rotation matrix R. The "
        "backward of y = R x is dx = Rᵀ dy. What is the transpose of a rotation?",
        "Rᵀ = R(-θ): the same rotation the other way, so the forward's code with sin negated. "
        "Use the same pairs as the forward (pairs(dout, layout) and pairs(dx, layout), views "
        "you can write into) and the same cos and sin rows.",
        "dx = np.empty_like(dout);  da, db = pairs(dout, layout);  dx_a, dx_b = pairs(dx, "
        "layout)\n"
        "dx_a[...] = da * cos + db * sin\n"
        "dx_b[...] = db * cos - da * sin",
    ),
    "swiglu": (
        "out = silu(g) * u is elementwise: one product rule. du is easy; for dg you need the "
        "derivative of silu(g) = g * sigmoid(g), itself a product.",
        "du = dout * silu(g). silu'(g) = s + g * s * (1 - s) with s = sigmoid(g) "
        "(sigmoid' = s (1 - s)); then dg = dout * u * silu'(g). Return them in the forward's "
        "order (dg, du).",
        "s = sigmoid(g)\n"
        "du = dout * g * s\n"
        "dg = dout * u * s * (1 + g * (1 - s))",
    ),
    "gqa": (
        "Per query head, this is the attention exercise's backward, with the head's shared K "
        "and V. A key/value head feeds G query heads: a value used G times gets the sum of its "
        "G gradients (fan-out).",
        "Repeat k and v as the forward did (np.repeat(k, G, axis=1)), run the attention "
        "backward per query head: dq (B, NH, T, hs), and per query head dk, dv. Then sum "
        "each group of G consecutive query heads: reshape (B, NH, T, hs) to (B, KV, G, T, hs) "
        "and sum axis 2. Merge dq, dk, dv to (B, T, heads * hs) and concatenate them.",
        "P = att;  kr, vr = np.repeat(k, G, 1), np.repeat(v, G, 1);  "
        "dy = dout.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)\n"
        "dP = dy @ vr.swapaxes(-1, -2);  dS = P * (dP - (dP * P).sum(-1, keepdims=True))\n"
        "dq = dS @ kr * scale;  dk = (dS.swapaxes(-1, -2) @ q * scale).reshape(B, KV, G, T, "
        "hs).sum(2)\n"
        "dv = (P.swapaxes(-1, -2) @ dy).reshape(B, KV, G, T, hs).sum(2)\n"
        "merge(z) = z.transpose(0, 2, 1, 3).reshape(B, T, -1);  "
        "dqkv = np.concatenate([merge(dq), merge(dk), merge(dv)], -1)",
    ),
    "llama": (
        "As the model exercise: read llama_forward from the bottom up and call the matching "
        "backward of each line, in reverse order; add the gradients of a value used twice. "
        "Two new fan-outs: the MLP's input m feeds c_gate and c_fc, and only q and k went "
        "through RoPE.",
        "Start with cross_entropy_backward(cache.loss), then lm_head (untied: its own gradient, "
        "lm_head.weight), ln_f, then the blocks from the last to the first. MLP: c_proj, "
        "swiglu_backward gives (dg, du); c_gate's dx and c_fc's dx add up; ln_2. Attention: "
        "c_proj, gqa_backward, then rope_backward on the first QK columns of dqkv only, then "
        "c_attn, ln_1. Finally embedding_backward's dwte is wte's (drop its dwpe).",
        "dx, g['lm_head.weight'], _ = linear_backward(cross_entropy_backward(cache.loss), "
        "cache.lm_head)\n"
        "dx, g['transformer.ln_f.weight'] = rmsnorm_backward(dx, cache.ln_f)\n"
        "per block c (last first): dm, g[..c_proj], _ = linear_backward(dx, c.mlp_proj);  "
        "dg, du = swiglu_backward(dm, c.swiglu)\n"
        "    dm = (c_fc's dx from du) + (c_gate's dx from dg);  dm, g[..ln_2] = "
        "rmsnorm_backward(dm, c.ln_2);  dx = dx + dm\n"
        "    da = gqa_backward(c_proj's dx, c.attn);  hs = da.shape[-1] // (NH + 2 KV);  "
        "QK = (NH + KV) hs\n"
        "    dqk = rope_backward(da[..., :QK].reshape(B, T, NH + KV, hs), c.rope);  "
        "da = np.concatenate([dqk.reshape(B, T, QK), da[..., QK:]], -1)\n"
        "    then c_attn and ln_1;  dx = dx + da\n"
        "g['transformer.wte.weight'], _ = embedding_backward(dx, cache.emb)",
    ),
}
LEVELS = 3


def hint(name: str, level: int) -> list[str]:
    """Hints 1..level for an exercise, as paragraphs."""
    if name not in HINTS:
        raise ValueError(f"unknown exercise {name!r}; the exercises are: {' '.join(HINTS)}")
    if not 1 <= level <= LEVELS:
        raise ValueError(f"--level must be 1 to {LEVELS}, got {level}")
    return [f"level {k + 1}: {text}" for k, text in enumerate(HINTS[name][:level])]
