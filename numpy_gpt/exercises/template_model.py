'''The learner's file for the last exercise: the whole GPT's backward, from their own layers.

It imports the learner's own exercise files (linear.py, layernorm.py, ...) from the same
folder, so the whole-model check exercises their code, not the package's.
'''

from __future__ import annotations

MODEL = '''
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # your own layer files, next to this one

from attention import attention_backward, attention_forward  # noqa: E402
from cross_entropy import cross_entropy_backward, cross_entropy_forward  # noqa: E402
from embedding import embedding_backward, embedding_forward  # noqa: E402
from gelu import gelu_tanh_backward, gelu_tanh_forward  # noqa: E402
from layernorm import layernorm_backward, layernorm_forward  # noqa: E402
from linear import linear_backward, linear_forward  # noqa: E402


class BlockCache(NamedTuple):
    ln_1: tuple  # each field: the cache its layer's forward returned
    c_attn: tuple
    attn: tuple
    attn_proj: tuple
    ln_2: tuple
    c_fc: tuple
    gelu: tuple
    mlp_proj: tuple


class ModelCache(NamedTuple):
    emb: tuple
    blocks: list  # one BlockCache per layer, bottom to top
    ln_f: tuple
    lm_head: tuple
    loss: tuple  # cross-entropy's cache


def gpt_forward(params, idx, targets, n_layer, n_head, eps=1e-5):
    """The GPT forward, with your layers. No dropout; the head is tied to wte (lm_head = wte).

    params: the canonical names (DESIGN.md), e.g. "transformer.h.0.attn.c_attn.weight".
    Shapes: idx, targets (B, T) int -> loss (a float), cache
    """
    P = params
    x, emb = embedding_forward(idx, P["transformer.wte.weight"], P["transformer.wpe.weight"])
    blocks = []
    for i in range(n_layer):
        h = f"transformer.h.{i}."
        a, ln_1 = layernorm_forward(x, P[h + "ln_1.weight"], P[h + "ln_1.bias"], eps)
        a, c_attn = linear_forward(a, P[h + "attn.c_attn.weight"], P[h + "attn.c_attn.bias"])
        a, attn = attention_forward(a, n_head)
        a, attn_proj = linear_forward(a, P[h + "attn.c_proj.weight"], P[h + "attn.c_proj.bias"])
        x = x + a  # residual 1
        m, ln_2 = layernorm_forward(x, P[h + "ln_2.weight"], P[h + "ln_2.bias"], eps)
        m, c_fc = linear_forward(m, P[h + "mlp.c_fc.weight"], P[h + "mlp.c_fc.bias"])
        m, gelu = gelu_tanh_forward(m)
        m, mlp_proj = linear_forward(m, P[h + "mlp.c_proj.weight"], P[h + "mlp.c_proj.bias"])
        x = x + m  # residual 2
        blocks.append(BlockCache(ln_1, c_attn, attn, attn_proj, ln_2, c_fc, gelu, mlp_proj))
    x, ln_f = layernorm_forward(x, P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], eps)
    logits, lm_head = linear_forward(x, P["transformer.wte.weight"], None)  # tied head
    loss, loss_cache = cross_entropy_forward(logits, targets)
    return loss, ModelCache(emb, blocks, ln_f, lm_head, loss_cache)


def gpt_backward(cache):
    """Backward of the whole model: the gradient of the loss wrt every parameter.

    Returns a dict with exactly the parameters' names (the keys gpt_forward read), each
    gradient with its parameter's shape.
    Call your backward functions in the exact reverse order of gpt_forward. Where a value is
    used twice, add the gradients of both uses: the residual stream x in every block, and
    wte (the embedding table and the output head).
    """
    grads = {}
    raise NotImplementedError("write gpt_backward")
'''
