"""torch_gpt's Llama-shaped blocks: names and shapes, both RoPE layouts against a by-hand
rotation, grouped-query attention (SDPA enable_gqa == written out == plain multi-head with
repeated K/V), a KV cache that holds n_kv_head heads, batched decoding, LoRA on the seven
matrices, torch.compile in one graph and bf16 autocast. numpy_gpt equality is parity's job
(tests/parity/test_parity_llama.py); these test torch_gpt's own behaviour.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import torch_gpt
from numpy_gpt.nn.config import GPTConfig, arch_fields, param_shapes
from numpy_gpt.nn.lora import LoRAConfig
from torch_gpt import batch_generate as tb
from torch_gpt import generate as tg
from torch_gpt.layers import apply_rope, rope_tables
from torch_gpt.lora import apply_lora, lora_parameters, merge_lora
from torch_gpt.precision import autocast

LLAMA = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=4, n_embd=16,
                  **arch_fields("llama", 4))  # 4 query heads, 2 key/value heads, hs 4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(cfg: GPTConfig = LLAMA, **kw) -> torch_gpt.GPT:
    return torch_gpt.GPT(cfg, dtype="float64", seed=1, **kw).eval()


def _idx(B: int = 2, T: int = 7, V: int = 13, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kv", [1, 2, None])
@pytest.mark.parametrize("bias", [False, True])
def test_state_dict_is_param_shapes(kv: int | None, bias: bool) -> None:
    cfg = LLAMA.replace(n_kv_head=kv, bias=bias)
    sd = torch_gpt.GPT(cfg, init=False).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == param_shapes(cfg)
    assert "transformer.wpe.weight" not in sd and "transformer.h.0.ln_1.bias" not in sd
    assert "rope_cos" not in sd  # the tables are buffers, never saved


@pytest.mark.parametrize("layout", ["halves", "interleaved"])
def test_rope_turns_the_pairs_of_its_layout(layout: str) -> None:
    """apply_rope against the rotation written pair by pair: pair i of position p turns by
    p * theta^(-2i/hs); halves pairs (i, i + hs/2), interleaved (2i, 2i+1)."""
    cfg = LLAMA.replace(rope_layout=layout, rope_theta=100.0)
    hs, T = cfg.head_size, cfg.block_size
    x = torch.randn(2, 3, T, hs, dtype=torch.float64)
    got = apply_rope(x, *rope_tables(cfg), layout)
    want = x.clone()
    for p in range(T):
        for i in range(hs // 2):
            a, b = (i, i + hs // 2) if layout == "halves" else (2 * i, 2 * i + 1)
            angle = p * 100.0 ** (-2 * i / hs)
            c, s = math.cos(angle), math.sin(angle)
            want[..., p, a] = x[..., p, a] * c - x[..., p, b] * s
            want[..., p, b] = x[..., p, b] * c + x[..., p, a] * s
    torch.testing.assert_close(got, want, rtol=0, atol=1e-14)
    # relative positions: q_m . k_n depends on m - n only
    q, k = torch.randn(hs, dtype=torch.float64), torch.randn(hs, dtype=torch.float64)
    cos, sin = rope_tables(cfg)

    def dot(m: int, n: int) -> float:
        return float(apply_rope(q, cos[m], sin[m], layout) @ apply_rope(k, cos[n], sin[n],
                                                                         layout))

    assert dot(5, 2) == pytest.approx(dot(4, 1), abs=1e-12)


def test_gqa_sdpa_manual_and_repeated_heads_agree() -> None:
    """Grouped-query attention is multi-head attention whose K/V heads are each repeated for
    their group: a KV=2 model equals a KV=4 model holding the repeated k/v rows."""
    gqa = _model()
    idx = _idx()
    logits = gqa(idx)[0]
    manual = _model(attn="manual")
    manual.load_state_dict(gqa.state_dict())
    torch.testing.assert_close(manual(idx)[0], logits, rtol=0, atol=1e-13)
    mha = _model(LLAMA.replace(n_kv_head=None))
    sd = dict(gqa.state_dict())
    hs, NH, KV = LLAMA.head_size, LLAMA.n_head, LLAMA.kv_heads
    for i in range(LLAMA.n_layer):
        w = sd[f"transformer.h.{i}.attn.c_attn.weight"]
        q, k, v = w.split((NH * hs, KV * hs, KV * hs))
        rep = [t.view(KV, hs, -1).repeat_interleave(NH // KV, 0).reshape(NH * hs, -1)
               for t in (k, v)]  # head h reads kv head h // G
        sd[f"transformer.h.{i}.attn.c_attn.weight"] = torch.cat([q, *rep])
    mha.load_state_dict(sd)
    torch.testing.assert_close(mha(idx)[0], logits, rtol=0, atol=1e-13)


@pytest.mark.parametrize("layout", ["halves", "interleaved"])
def test_kv_cache_holds_kv_heads_and_equals_recompute(layout: str) -> None:
    model = _model(LLAMA.replace(rope_layout=layout, n_kv_head=1))
    idx = _idx(T=8)
    cache = tg.KVCache(LLAMA.n_layer, LLAMA.block_size)
    chunks = [tg.forward_cached(model, idx[:, a:b], cache) for a, b in ((0, 3), (3, 4), (4, 8))]
    assert cache.k[0].shape == (2, 1, 8, LLAMA.head_size)  # one K/V head, not four
    torch.testing.assert_close(torch.cat(chunks, 1), model(idx)[0], rtol=0, atol=1e-13)


def test_batched_generation_equals_one_prompt_at_a_time() -> None:
    model = _model()
    prompts = [[1, 2], [3], [4, 5, 6, 7, 8, 9, 10, 11, 12]]  # the last is cropped
    rows = tb.generate_batch(model, prompts, greedy=True, max_new_tokens=12)
    alone = [list(tg.generate(model, p, greedy=True, max_new_tokens=12)) for p in prompts]
    assert rows == alone
    sampled = tb.generate_batch(model, prompts, temperature=1.0, top_k=5, seed=3,
                                max_new_tokens=9)
    assert sampled == tb.generate_batch(model, prompts, temperature=1.0, top_k=5, seed=3,
                                        max_new_tokens=9, use_kv_cache=False)


def test_lora_adapts_q_k_v_o_and_the_three_mlp_matrices() -> None:
    model = _model()
    lcfg = LoRAConfig(rank=2, targets=("c_attn", "c_proj", "c_gate", "c_fc"))
    apply_lora(model, lcfg)
    names = {k.rsplit(".lora_", 1)[0] for k in lora_parameters(model)}
    assert names == {f"transformer.h.{i}.{m}" for i in range(2) for m in
                     ("attn.c_attn", "attn.c_proj", "mlp.c_gate", "mlp.c_fc", "mlp.c_proj")}
    idx = _idx()
    before = model(idx)[0].detach()
    with torch.no_grad():
        for k, p in lora_parameters(model).items():
            if ".lora_B." in k:
                p.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(0))
    adapted = model(idx)[0].detach()
    assert not torch.allclose(adapted, before)
    merge_lora(model)
    torch.testing.assert_close(model(idx)[0], adapted, rtol=0, atol=1e-12)


@pytest.mark.parametrize("attn", ["sdpa", "manual"])
def test_traces_as_one_graph_for_torch_compile(attn: str) -> None:
    model = torch_gpt.GPT(LLAMA, attn=attn)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    idx = _idx()
    _, loss = compiled(idx, idx)
    loss.backward()
    assert torch.equal(compiled(idx)[0], model(idx)[0])


def test_bf16_autocast_stays_close_to_float32() -> None:
    model = torch_gpt.GPT(LLAMA, seed=2)
    idx = _idx()
    with torch.no_grad():
        full = model(idx)[0]
    with autocast("cpu", "bfloat16"):
        half, half_loss = model(idx, idx)
    half_loss.backward()
    assert half.dtype == torch.bfloat16
    assert float((half.detach().float() - full).abs().max() / full.abs().max()) < 3e-2
    assert all(p.grad is not None and p.grad.dtype == torch.float32
               for p in model.parameters())


def test_checkpoint_round_trip_with_the_numpy_twin(tmp_path) -> None:
    from numpy_gpt import GPT as NumpyGPT

    model = _model(LLAMA.replace(rope_layout="interleaved"))
    model.save(tmp_path / "ck")
    ref = NumpyGPT.load(tmp_path / "ck")
    assert ref.config == model.config
    idx = _idx()
    np.testing.assert_allclose(ref.forward(idx.numpy())[0], model(idx)[0].detach().numpy(),
                               rtol=0, atol=1e-13)
    assert torch_gpt.GPT.load(tmp_path / "ck").config.rope_layout == "interleaved"
