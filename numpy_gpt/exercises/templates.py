'''The learner's starting files: each a layer's forward, and its backward left to write.

Every forward is plain NumPy that computes the same values as the package's layer (the check
verifies it), and returns a cache with the same fields as the package's cache, so the
reference backward could run on it. The backward has its signature, a docstring saying what
to differentiate and the shapes, and a body that raises NotImplementedError.

`render(name, body)` fills in the common header; the model exercise's file is in
template_model.py.
'''

from __future__ import annotations

from pathlib import Path

# the guide the exercises follow: in the repository beside numpy_gpt/, not in the package
# (`pip install .` installs numpy_gpt only)
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "backprop.md"

HEADER = '''"""Exercise {number}/{total}: {title}.

{guide}
Then write {backward} below: replace its `raise NotImplementedError` with your
code. Leave the forward as it is.

    python -m numpy_gpt exercise check {name} --dir {folder}   # is it right? what is wrong?
    python -m numpy_gpt exercise hint {name} --level 1   # a nudge (levels 1 to 3)

Convention: for a scalar loss L and any array z, dz = dL/dz has the shape of z. A backward
gets dout = dL/d(out) and returns the gradient of every input of the forward, in the forward's
argument order.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

'''

LINEAR = '''
class LinearCache(NamedTuple):
    x: np.ndarray  # (..., in) the input
    w: np.ndarray  # (out, in) the weight, stored (out, in) as in PyTorch
    has_bias: bool  # False when the forward got b=None


def linear_forward(x, w, b):
    """y = x @ w.T + b.   Shapes: x (..., in), w (out, in), b (out,) or None -> y (..., out)."""
    y = x @ w.T
    if b is not None:
        y = y + b
    return y, LinearCache(x, w, b is not None)


def linear_backward(dout, cache):
    """Backward of y = x @ w.T + b.

    Returns (dx, dw, db).
    Shapes: dout (..., out) -> dx (..., in), dw (out, in), db (out,); db is None when the
    forward had no bias. x may have any number of leading axes (B, T, ...): every row of x
    is one more use of the same w and b.
    """
    x, w, has_bias = cache
    raise NotImplementedError("write linear_backward")
'''

LAYERNORM = '''
class LayerNormCache(NamedTuple):
    n: np.ndarray  # (B, T, C) the normalized input (x - mean) * rstd
    rstd: np.ndarray  # (B, T, 1) 1 / sqrt(var + eps)
    w: np.ndarray  # (C,) the scale
    has_bias: bool  # False when the forward got b=None


def layernorm_forward(x, w, b, eps):
    """y = w * n + b with n = (x - mean) / sqrt(var + eps), over the last axis (biased var).

    Shapes: x (B, T, C), w (C,), b (C,) or None -> y (B, T, C)
    """
    mean = x.mean(axis=-1, keepdims=True)  # (B, T, 1)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # (B, T, 1)
    rstd = 1.0 / np.sqrt(var + eps)
    n = (x - mean) * rstd
    y = n * w
    if b is not None:
        y = y + b
    return y, LayerNormCache(n, rstd, w, b is not None)


def layernorm_backward(dout, cache):
    """Backward of y = w * n + b, n = (x - mean) * rstd.

    Returns (dx, dw, db).
    Shapes: dout (B, T, C) -> dx (B, T, C), dw (C,), db (C,) or None without a bias.
    Careful: every x[..., i] moves the mean and the variance of its row, so it reaches every
    n[..., j] of that row, not only n[..., i].
    """
    n, rstd, w, has_bias = cache
    raise NotImplementedError("write layernorm_backward")
'''

GELU = '''
S = np.sqrt(2.0 / np.pi)  # sqrt(2/pi)
A = 0.044715


class GeluTanhCache(NamedTuple):
    x: np.ndarray  # (...) the input
    t: np.ndarray  # (...) tanh(u), u = S * (x + A * x**3)


def gelu_tanh_forward(x):
    """GPT-2's GELU: y = 0.5 * x * (1 + tanh(S * (x + A * x**3))).   Shapes: x (...) -> y (...)."""
    t = np.tanh(S * (x + A * x**3))
    y = 0.5 * x * (1.0 + t)
    return y, GeluTanhCache(x, t)


def gelu_tanh_backward(dout, cache):
    """Backward of y = 0.5 x (1 + t), t = tanh(u), u = S (x + A x^3).

    Returns dx (one array).
    Shapes: dout (...) -> dx (...), elementwise.
    x reaches y twice: directly, and through t. tanh'(u) = 1 - tanh(u)^2.
    """
    x, t = cache
    raise NotImplementedError("write gelu_tanh_backward")
'''

CROSS_ENTROPY = '''
IGNORE_INDEX = -100  # a target equal to this is skipped: no loss, no gradient, not counted


class CrossEntropyCache(NamedTuple):
    probs: np.ndarray  # (N, V) softmax(logits), the (B, T) rows flattened to N = B*T
    targets: np.ndarray  # (N,) int target ids
    valid: np.ndarray  # (N,) bool, targets != IGNORE_INDEX
    n_valid: int  # how many targets count
    label_smoothing: float  # always 0.0 in this exercise
    shape: tuple  # the logits' shape (B, T, V)


def cross_entropy_forward(logits, targets):
    """loss = mean over the counted positions of -log softmax(logits)[target].

    Shapes: logits (B, T, V), targets (B, T) int -> loss (a float)
    """
    V = logits.shape[-1]
    z = logits.reshape(-1, V)  # (N, V)
    t = targets.reshape(-1)  # (N,)
    z = z - z.max(axis=-1, keepdims=True)  # the same softmax, without overflow
    probs = np.exp(z)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    valid = t != IGNORE_INDEX
    n_valid = int(valid.sum())
    loss = -np.log(probs[valid, t[valid]]).sum() / n_valid
    return float(loss), CrossEntropyCache(probs, t, valid, n_valid, 0.0, logits.shape)


def cross_entropy_backward(cache, dloss=1.0):
    """Backward of the mean cross-entropy, through the softmax, to the logits.

    dloss = dL/dloss, a float (the loss may be scaled, e.g. for gradient accumulation).
    Returns dlogits (one array).
    Shapes: -> dlogits (B, T, V), the shape in cache.shape.
    Ignored positions pass no gradient; the mean divides by n_valid, not by B*T.
    """
    probs, targets, valid, n_valid, label_smoothing, shape = cache
    raise NotImplementedError("write cross_entropy_backward")
'''

ATTENTION = '''
class AttentionCache(NamedTuple):
    q: np.ndarray  # (B, NH, T, hs) queries, one slice per head
    k: np.ndarray  # (B, NH, T, hs) keys
    v: np.ndarray  # (B, NH, T, hs) values
    att: np.ndarray  # (B, NH, T, T) P = softmax(S), the attention weights
    mask: None  # attention dropout's mask: always None in this exercise
    scale: float  # 1 / sqrt(hs)
    drop_scale: float  # always 1.0 in this exercise


def attention_forward(qkv, n_head):
    """Causal multi-head self-attention, from the fused q|k|v to the merged heads.

    Per head: S = q k^T * scale, S[i, j] = -inf for j > i (the future), P = softmax(S) over j,
    y = P v. Heads are then put side by side again.
    Shapes: qkv (B, T, 3C) -> out (B, T, C), with NH = n_head, hs = C // NH
    """
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head

    def heads(z):  # (B, T, C) -> (B, NH, T, hs)
        return z.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3)

    q, k, v = heads(qkv[..., :C]), heads(qkv[..., C:2 * C]), heads(qkv[..., 2 * C:])
    scale = 1.0 / np.sqrt(hs)
    S = (q @ k.swapaxes(-1, -2)) * scale  # (B, NH, T, T)
    S = S + np.triu(np.full((T, T), -np.inf), k=1)  # causal mask
    S = S - S.max(axis=-1, keepdims=True)
    P = np.exp(S)
    P = P / P.sum(axis=-1, keepdims=True)
    y = P @ v  # (B, NH, T, hs)
    out = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # merge the heads
    return out, AttentionCache(q, k, v, P, None, scale, 1.0)


def attention_backward(dout, cache):
    """Backward of the attention core, from the merged heads back to the fused qkv.

    Returns dqkv (one array).
    Shapes: dout (B, T, C) -> dqkv (B, T, 3C): dq, dk, dv side by side, as q, k, v were.
    Undo the head merge first (dout -> dy of shape (B, NH, T, hs)), then go back through
    y = P v, the softmax, and S = q k^T * scale. The mask needs no backward of its own.
    """
    q, k, v, att, mask, scale, drop_scale = cache
    raise NotImplementedError("write attention_backward")
'''

EMBEDDING = '''
class EmbeddingCache(NamedTuple):
    idx: np.ndarray  # (B, T) int token ids
    vocab_size: int  # V, the rows of wte
    block_size: int  # the rows of wpe


def embedding_forward(idx, wte, wpe):
    """x[b, t] = wte[idx[b, t]] + wpe[t].

    Shapes: idx (B, T) int, wte (V, C), wpe (block_size, C) -> x (B, T, C)
    """
    T = idx.shape[1]
    x = wte[idx] + wpe[:T]
    return x, EmbeddingCache(idx, wte.shape[0], wpe.shape[0])


def embedding_backward(dout, cache):
    """Backward of x[b, t] = wte[idx[b, t]] + wpe[t] (idx is not differentiable).

    Returns (dwte, dwpe).
    Shapes: dout (B, T, C) -> dwte (V, C), dwpe (block_size, C): the parameters' full shapes,
    zero in the rows the batch did not use. A token id may appear several times.
    """
    idx, vocab_size, block_size = cache
    raise NotImplementedError("write embedding_backward")
'''

DROPOUT = '''
class DropoutCache(NamedTuple):
    mask: np.ndarray  # (...) bool, True = keep
    scale: float  # 1 / (1 - p)


def dropout_forward(x, mask, p):
    """Inverted dropout: y = x * mask / (1 - p), with the keep-mask given.

    Shapes: x (...), mask (...) bool -> y (...)
    """
    scale = 1.0 / (1.0 - p)
    return x * mask * scale, DropoutCache(mask, scale)


def dropout_backward(dout, cache):
    """Backward of y = x * mask * scale.

    Returns dx (one array).   Shapes: dout (...) -> dx (...)
    """
    mask, scale = cache
    raise NotImplementedError("write dropout_backward")
'''

RESIDUAL = '''
class ResidualCache(NamedTuple):
    x: np.ndarray  # (B, T, C) the input, used twice
    w: np.ndarray  # (C, C) the branch's weight


def residual_forward(x, w, b):
    """A residual connection around a Linear branch: y = x + (x @ w.T + b).

    Shapes: x (B, T, C), w (C, C), b (C,) -> y (B, T, C)
    """
    branch = x @ w.T + b
    return x + branch, ResidualCache(x, w)


def residual_backward(dout, cache):
    """Backward of y = x + (x @ w.T + b).

    Returns (dx, dw, db).
    Shapes: dout (B, T, C) -> dx (B, T, C), dw (C, C), db (C,)
    x fans out: it feeds the skip path and the branch.
    """
    x, w = cache
    raise NotImplementedError("write residual_backward")
'''

BODIES = {
    "linear": LINEAR, "layernorm": LAYERNORM, "gelu": GELU, "cross_entropy": CROSS_ENTROPY,
    "attention": ATTENTION, "embedding": EMBEDDING, "dropout": DROPOUT, "residual": RESIDUAL,
}


def render(body: str, **fields: str) -> str:
    """The learner's file: the header (fields: number, total, title, section, backward, name,
    folder) then the exercise's body."""
    return (HEADER.format(guide=guide_line(fields["section"], fields["name"]), **fields) + "\n"
            + body.lstrip("\n"))


def guide_line(section: str, name: str, guide: Path = GUIDE) -> str:
    """Where to read the derivation, as a path that opens from any folder: the guide's full
    path in a checkout; where it is absent (an installed copy), where to find it and the hint
    that holds its equations."""
    if guide.is_file():
        return f'Read {guide}, section "{section}".'
    return (f'Read docs/backprop.md of the gpt-twins repository, section "{section}" (an\n'
            f"installed numpy_gpt does not include it; `python -m numpy_gpt exercise hint {name}\n"
            "--level 3` gives its equations).")
