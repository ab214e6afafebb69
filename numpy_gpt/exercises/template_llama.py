'''The learner's starting files for the Llama exercises: RMSNorm, RoPE, SwiGLU, grouped-query
attention, and the whole Llama-shaped model (llama.py, from their own layer files).

As templates.py: each forward is plain NumPy computing the package's values, returning a cache
with the package's fields; each backward has its signature, a docstring (what to
differentiate, the shapes) and a body that raises NotImplementedError.
'''

from __future__ import annotations

RMSNORM = '''
class RMSNormCache(NamedTuple):
    n: np.ndarray  # (B, T, C) the normalized input x * rstd
    rstd: np.ndarray  # (B, T, 1) 1 / sqrt(mean_C(x^2) + eps), the reciprocal root mean square
    w: np.ndarray  # (C,) the scale


def rmsnorm_forward(x, w, eps):
    """y = w * n with n = x / sqrt(mean(x^2) + eps), over the last axis. No mean is
    subtracted and there is no bias: LayerNorm without the centering.

    Shapes: x (B, T, C), w (C,) -> y (B, T, C)
    """
    rstd = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)  # (B, T, 1)
    n = x * rstd
    return n * w, RMSNormCache(n, rstd, w)


def rmsnorm_backward(dout, cache):
    """Backward of y = w * n, n = x * rstd, rstd = (mean_C(x^2) + eps)^(-1/2).

    Returns (dx, dw).
    Shapes: dout (B, T, C) -> dx (B, T, C), dw (C,)
    Careful: every x[..., i] moves rstd, the root mean square of its whole row, so it
    reaches every n[..., j] of that row, not only n[..., i].
    """
    n, rstd, w = cache
    raise NotImplementedError("write rmsnorm_backward")
'''

ROPE = '''
class RopeCache(NamedTuple):
    cos: np.ndarray  # (T, 1, hs/2) cos(angle) of each position and pair (1: every head alike)
    sin: np.ndarray  # (T, 1, hs/2) sin(angle)
    layout: str  # which coordinates pair up: "halves" or "interleaved"


def rope_tables(T, hs, theta=10000.0):
    """Given (nothing to write): cos and sin, each (T, hs/2). Row pos, column i holds the
    angle pos * theta^(-2i/hs): pair i turns by that angle at position pos."""
    inv_freq = 1.0 / theta ** (np.arange(0, hs, 2, dtype=np.float64) / hs)  # (hs/2,)
    angles = np.outer(np.arange(T, dtype=np.float64), inv_freq)  # (T, hs/2)
    return np.cos(angles), np.sin(angles)


def pairs(z, layout):
    """The two coordinates of every pair, as views of z (..., hs) -> 2 x (..., hs/2).
    "halves": pair i is (z[i], z[i + hs/2]) (Hugging Face's rotate_half);
    "interleaved": pair i is (z[2i], z[2i + 1]) (Meta's original Llama, llama2.c)."""
    half = z.shape[-1] // 2
    if layout == "halves":
        return z[..., :half], z[..., half:]
    return z[..., 0::2], z[..., 1::2]


def rope_forward(x, cos, sin, layout):
    """Turn every pair (a, b) of x by its angle: a' = a cos - b sin, b' = b cos + a sin.

    Shapes: x (B, T, heads, hs); cos, sin (T, 1, hs/2), the rows of x's positions
    -> out (B, T, heads, hs)
    """
    out = np.empty_like(x)
    a, b = pairs(x, layout)
    out_a, out_b = pairs(out, layout)  # views: writing them fills out
    out_a[...] = a * cos - b * sin
    out_b[...] = b * cos + a * sin
    return out, RopeCache(cos, sin, layout)


def rope_backward(dout, cache):
    """Backward of out = R(angle) x, pair by pair (a rotation of each (a, b)).

    Returns dx (one array).
    Shapes: dout (B, T, heads, hs) -> dx (B, T, heads, hs)
    A rotation is a linear map: its backward multiplies by the transpose of its matrix.
    The pairs are the forward's pairs (pairs(z, layout) gives views you can write to).
    """
    cos, sin, layout = cache
    raise NotImplementedError("write rope_backward")
'''

SWIGLU = '''
class SwiGLUCache(NamedTuple):
    g: np.ndarray  # (B, T, F) the gate's input, c_gate(x)
    u: np.ndarray  # (B, T, F) the up projection, c_fc(x)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def swiglu_forward(g, u):
    """SwiGLU's gate: out = silu(g) * u, silu(g) = g * sigmoid(g). In Llama's MLP,
    g = c_gate(x) and u = c_fc(x) (two paths from the same x), and c_proj(out) follows.

    Shapes: g (B, T, F), u (B, T, F) -> out (B, T, F)
    """
    return g * sigmoid(g) * u, SwiGLUCache(g, u)


def swiglu_backward(dout, cache):
    """Backward of out = silu(g) * u, silu(g) = g * s, s = sigmoid(g).

    Returns (dg, du).
    Shapes: dout (B, T, F) -> dg (B, T, F), du (B, T, F), elementwise.
    g appears twice in silu(g) = g * s: as the factor g and inside s.
    sigmoid'(g) = s * (1 - s).
    """
    g, u = cache
    raise NotImplementedError("write swiglu_backward")
'''

GQA = '''
class AttentionCache(NamedTuple):
    q: np.ndarray  # (B, NH, T, hs) queries: NH query heads
    k: np.ndarray  # (B, KV, T, hs) keys: KV key/value heads, each shared by G = NH/KV queries
    v: np.ndarray  # (B, KV, T, hs) values
    att: np.ndarray  # (B, NH, T, T) P = softmax(S), the attention weights
    mask: None  # attention dropout's mask: always None in this exercise
    scale: float  # 1 / sqrt(hs)
    drop_scale: float  # always 1.0 in this exercise


def gqa_forward(qkv, n_head, n_kv_head):
    """Causal grouped-query attention: NH = n_head query heads share KV = n_kv_head key/value
    heads. Query head h reads key/value head h // G, G = NH // KV (consecutive query heads
    form a group). KV = NH is the attention exercise; KV = 1 is multi-query attention.

    Shapes: qkv (B, T, (NH + 2 KV) hs): q, k, v side by side -> out (B, T, NH hs)
    """
    B, T, D = qkv.shape
    NH, KV = n_head, n_kv_head
    G = NH // KV
    hs = D // (NH + 2 * KV)
    heads = qkv.reshape(B, T, NH + 2 * KV, hs).transpose(0, 2, 1, 3)  # (B, NH + 2 KV, T, hs)
    q, k, v = heads[:, :NH], heads[:, NH:NH + KV], heads[:, NH + KV:]
    k_for_q = np.repeat(k, G, axis=1)  # (B, NH, T, hs): query head h gets K/V head h // G
    v_for_q = np.repeat(v, G, axis=1)
    scale = 1.0 / np.sqrt(hs)
    S = (q @ k_for_q.swapaxes(-1, -2)) * scale  # (B, NH, T, T)
    S = S + np.triu(np.full((T, T), -np.inf), k=1)  # causal mask
    S = S - S.max(axis=-1, keepdims=True)
    P = np.exp(S)
    P = P / P.sum(axis=-1, keepdims=True)
    y = P @ v_for_q  # (B, NH, T, hs)
    out = y.transpose(0, 2, 1, 3).reshape(B, T, NH * hs)  # merge the heads
    return out, AttentionCache(q, k, v, P, None, scale, 1.0)


def gqa_backward(dout, cache):
    """Backward of grouped-query attention, from the merged heads back to the fused qkv.

    Returns dqkv (one array).
    Shapes: dout (B, T, NH hs) -> dqkv (B, T, (NH + 2 KV) hs): dq, dk, dv side by side.
    Per query head it is the attention exercise's backward. But key/value head j was used
    by every query head of its group (h = j G ... j G + G - 1): what does that make dk_j?
    """
    q, k, v, att, mask, scale, drop_scale = cache
    raise NotImplementedError("write gqa_backward")
'''

LLAMA = '''
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # your own layer files, next to this one

from cross_entropy import cross_entropy_backward, cross_entropy_forward  # noqa: E402
from embedding import embedding_backward, embedding_forward  # noqa: E402
from gqa import gqa_backward, gqa_forward  # noqa: E402
from linear import linear_backward, linear_forward  # noqa: E402
from rmsnorm import rmsnorm_backward, rmsnorm_forward  # noqa: E402
from rope import rope_backward, rope_forward, rope_tables  # noqa: E402
from swiglu import swiglu_backward, swiglu_forward  # noqa: E402


class BlockCache(NamedTuple):
    ln_1: tuple  # each field: the cache its layer's forward returned
    c_attn: tuple
    rope: tuple  # RoPE's: q and k, as (B, T, NH + KV, hs) heads side by side, were turned
    attn: tuple
    attn_proj: tuple
    ln_2: tuple
    c_gate: tuple
    c_fc: tuple
    swiglu: tuple
    mlp_proj: tuple


class ModelCache(NamedTuple):
    emb: tuple
    blocks: list  # one BlockCache per layer, bottom to top
    ln_f: tuple
    lm_head: tuple
    loss: tuple  # cross-entropy's cache
    n_head: int  # NH query heads
    n_kv_head: int  # KV key/value heads


def llama_forward(params, idx, targets, n_layer, n_head, n_kv_head, rope_theta=10000.0,
                  layout="halves", eps=1e-5):
    """The Llama-shaped forward, with your layers: RMSNorm, RoPE on q and k, grouped-query
    attention, a SwiGLU MLP; no biases, no position table, the head untied (lm_head.weight).

    params: the canonical names (DESIGN.md), e.g. "transformer.h.0.mlp.c_gate.weight".
    Shapes: idx, targets (B, T) int -> loss (a float), cache
    """
    P = params
    B, T = idx.shape
    C = P["transformer.wte.weight"].shape[1]
    hs = C // n_head
    QK = (n_head + n_kv_head) * hs  # c_attn's first QK columns are q and k; v follows
    cos, sin = rope_tables(T, hs, rope_theta)  # (T, hs/2): positions 0..T-1
    cos, sin = cos[:, None], sin[:, None]  # (T, 1, hs/2): every head turns alike
    # no position table: RoPE places the tokens; a zero wpe adds nothing (its gradient is no
    # parameter's)
    x, emb = embedding_forward(idx, P["transformer.wte.weight"], np.zeros((T, C)))
    blocks = []
    for i in range(n_layer):
        h = f"transformer.h.{i}."
        a, ln_1 = rmsnorm_forward(x, P[h + "ln_1.weight"], eps)
        a, c_attn = linear_forward(a, P[h + "attn.c_attn.weight"], None)  # (B, T, QK + KV hs)
        qk, rope = rope_forward(a[..., :QK].reshape(B, T, n_head + n_kv_head, hs), cos, sin,
                                layout)  # turn q and k, not v
        a = np.concatenate([qk.reshape(B, T, QK), a[..., QK:]], axis=-1)
        a, attn = gqa_forward(a, n_head, n_kv_head)
        a, attn_proj = linear_forward(a, P[h + "attn.c_proj.weight"], None)
        x = x + a  # residual 1
        m, ln_2 = rmsnorm_forward(x, P[h + "ln_2.weight"], eps)
        g, c_gate = linear_forward(m, P[h + "mlp.c_gate.weight"], None)  # m is used twice:
        u, c_fc = linear_forward(m, P[h + "mlp.c_fc.weight"], None)  # the gate, the up path
        m, swiglu = swiglu_forward(g, u)
        m, mlp_proj = linear_forward(m, P[h + "mlp.c_proj.weight"], None)
        x = x + m  # residual 2
        blocks.append(BlockCache(ln_1, c_attn, rope, attn, attn_proj, ln_2, c_gate, c_fc,
                                 swiglu, mlp_proj))
    x, ln_f = rmsnorm_forward(x, P["transformer.ln_f.weight"], eps)
    logits, lm_head = linear_forward(x, P["lm_head.weight"], None)  # untied head
    loss, loss_cache = cross_entropy_forward(logits, targets)
    return loss, ModelCache(emb, blocks, ln_f, lm_head, loss_cache, n_head, n_kv_head)


def llama_backward(cache):
    """Backward of the whole Llama-shaped model: the gradient of the loss wrt every parameter.

    Returns a dict with exactly the parameters' names (the keys llama_forward read), each
    gradient with its parameter's shape; there are no biases (linear_backward's db is None).
    Call your backward functions in the exact reverse order of llama_forward. Where a value
    is used twice, add the gradients of both uses. Only the first QK columns of c_attn's
    output were turned by RoPE.
    """
    grads = {}
    raise NotImplementedError("write llama_backward")
'''

LLAMA_BODIES = {"rmsnorm": RMSNORM, "rope": ROPE, "swiglu": SWIGLU, "gqa": GQA}
