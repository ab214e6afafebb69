"""torch_gpt on its own: names, init, forward contract, dropout, optimizer, precision helpers.

Equality with numpy_gpt is tests/parity/test_parity.py's job; here each test pins one property of
the PyTorch twin (DESIGN.md contracts: names/shapes, (B,T,V) logits, loss definition).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import torch_gpt
from numpy_gpt.nn.config import GPTConfig, dropout_mask_shapes, param_shapes
from parity.tolerances import tolerance
from torch_gpt.optim import clip_grad_norm, configure_optimizer, get_lr, param_groups, set_lr
from torch_gpt.precision import autocast, grad_scaler, maybe_compile, resolve_device, tf32

CFG = GPTConfig(vocab_size=11, block_size=5, n_layer=2, n_head=2, n_embd=8)
HAS_CUDA = torch.cuda.is_available()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(cfg: GPTConfig, B: int = 2, T: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    targets = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    return idx, targets


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_has_the_canonical_names_and_shapes(tie: bool, bias: bool) -> None:
    cfg = CFG.replace(tie_weights=tie, bias=bias)
    model = torch_gpt.GPT(cfg)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == param_shapes(cfg)
    assert list(got) == list(param_shapes(cfg))  # same order too
    assert ("lm_head.weight" in got) == (not tie)
    assert dict(model.named_parameters()).keys() == got.keys()  # no buffers in state_dict


def test_tied_head_is_wte() -> None:
    model = torch_gpt.GPT(CFG, dtype="float64")
    x = torch.randn(1, 2, CFG.n_embd, dtype=torch.float64)
    idx, targets = _batch(CFG)
    _, loss = model(idx, targets)
    loss.backward()
    assert model.lm_head is None
    assert model.transformer.wte.weight.grad is not None
    head = F.linear(x, model.transformer.wte.weight)
    assert head.shape == (1, 2, CFG.vocab_size)


def test_init_is_seeded_gpt2_init_without_the_global_rng() -> None:
    state = torch.get_rng_state()
    a = torch_gpt.GPT(CFG, seed=3, dtype="float64")
    assert torch.equal(torch.get_rng_state(), state)  # no global RNG consumed
    b = torch_gpt.GPT(CFG, seed=3, dtype="float32")
    c = torch_gpt.GPT(CFG, seed=4, dtype="float64")
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa.float(), pb), name  # float64 draws cast: same model in float32
        if name.endswith("weight") and "ln_" not in name:
            assert not torch.equal(pa, pc), name
    p = dict(a.named_parameters())
    assert torch.all(p["transformer.h.0.ln_1.weight"] == 1)
    assert torch.all(p["transformer.h.0.attn.c_attn.bias"] == 0)
    big = torch_gpt.GPT(GPTConfig(vocab_size=512, block_size=64, n_layer=2, n_head=4,
                                  n_embd=64), dtype="float64")
    q = dict(big.named_parameters())
    assert q["transformer.wte.weight"].std().item() == pytest.approx(0.02, rel=0.05)
    resid = q["transformer.h.1.mlp.c_proj.weight"].std().item()
    assert resid == pytest.approx(0.02 / math.sqrt(2 * 2), rel=0.05)


@pytest.mark.parametrize("attn", ["sdpa", "manual"])
def test_forward_contract(attn: str) -> None:
    model = torch_gpt.GPT(CFG, attn=attn, dtype="float64")
    idx, targets = _batch(CFG, B=3, T=4)
    logits, loss = model(idx)
    assert logits.shape == (3, 4, CFG.vocab_size) and loss is None
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 4, CFG.vocab_size)  # full logits even with targets
    expected = F.cross_entropy(logits.reshape(-1, CFG.vocab_size), targets.reshape(-1))
    assert torch.allclose(loss, expected)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, CFG.block_size + 1, dtype=torch.long))


def test_sdpa_and_manual_attention_agree() -> None:
    a = torch_gpt.GPT(CFG, attn="sdpa", dtype="float64", seed=1)
    b = torch_gpt.GPT(CFG, attn="manual", dtype="float64", seed=1)
    idx, targets = _batch(CFG, T=5)
    la, _ = a(idx, targets)
    lb, _ = b(idx, targets)
    err = (la - lb).abs().max() / lb.abs().max()
    assert err <= tolerance("float64", "cpu", "forward")


def test_causality_future_tokens_do_not_change_the_past() -> None:
    model = torch_gpt.GPT(CFG, attn="manual", dtype="float64")
    idx, _ = _batch(CFG, B=1, T=5)
    other = idx.clone()
    other[0, -1] = (idx[0, -1] + 1) % CFG.vocab_size
    la, _ = model(idx)
    lb, _ = model(other)
    assert torch.equal(la[:, :-1], lb[:, :-1])


def test_label_smoothing_and_ignore_index() -> None:
    model = torch_gpt.GPT(CFG, dtype="float64")
    idx, targets = _batch(CFG, T=4)
    targets[0, 1] = -100
    logits, loss = model(idx, targets, label_smoothing=0.1)
    flat = logits.reshape(-1, CFG.vocab_size)
    keep = targets.reshape(-1) != -100
    logp = F.log_softmax(flat[keep], -1)
    nll = -logp.gather(1, targets.reshape(-1)[keep, None]).squeeze(1)
    manual = (0.9 * nll - 0.1 * logp.mean(-1)).mean()  # PyTorch's label smoothing
    assert torch.allclose(loss, manual, rtol=1e-12, atol=0)


def test_dropout_follows_train_mode_and_injected_masks() -> None:
    cfg = CFG.replace(dropout=0.3)
    model = torch_gpt.GPT(cfg, attn="manual", dtype="float64")
    idx, _ = _batch(cfg)
    model.eval()
    e1, _ = model(idx)
    e2, _ = model(idx)
    assert torch.equal(e1, e2)
    model.train()
    r1, _ = model(idx)
    assert not torch.equal(r1, e1)  # random dropout is on in train mode
    rng = np.random.default_rng(0)
    masks = {k: torch.from_numpy(rng.random(s) >= 0.3)
             for k, s in dropout_mask_shapes(cfg, 2, 3).items()}
    a, _ = model(idx, dropout_masks=masks)
    b, _ = model(idx, dropout_masks=masks)
    assert torch.equal(a, b) and not torch.equal(a, e1)
    model.eval()
    c, _ = model(idx, dropout_masks=masks)
    assert torch.equal(c, e1)  # eval mode ignores masks


def test_sdpa_refuses_an_injected_attention_mask() -> None:
    cfg = CFG.replace(dropout=0.3)
    model = torch_gpt.GPT(cfg, attn="sdpa").train()
    idx, _ = _batch(cfg)
    masks = {k: torch.ones(s, dtype=torch.bool) for k, s in dropout_mask_shapes(cfg, 2, 3).items()}
    with pytest.raises(ValueError, match="manual"):
        model(idx, dropout_masks=masks)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="attn"):
        torch_gpt.GPT(CFG, attn="flash")
    with pytest.raises(ValueError, match="dtype"):
        torch_gpt.GPT(CFG, dtype="float16")
    model = torch_gpt.GPT(CFG)
    with pytest.raises(KeyError, match="missing"):
        model.load_numpy_params({})
    params = model.numpy_params()
    params["transformer.wte.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="shape"):
        model.load_numpy_params(params)


def test_from_params_copies_the_arrays() -> None:
    params = torch_gpt.GPT(CFG, dtype="float64").numpy_params()
    model = torch_gpt.GPT.from_params(CFG, params)
    assert model.transformer.wte.weight.dtype == torch.float64
    before = model.transformer.wte.weight.detach().clone()
    params["transformer.wte.weight"][:] = 7.0
    assert torch.equal(model.transformer.wte.weight.detach(), before)
    assert model.num_params() == sum(v.size for v in params.values()) - CFG.block_size * 8


def test_optimizer_groups_and_schedule() -> None:
    model = torch_gpt.GPT(CFG.replace(tie_weights=False))
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    n = len(decay["params"]) + len(no_decay["params"])
    assert n == len(list(model.parameters()))
    opt = configure_optimizer(model, lr=1e-3, weight_decay=0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    set_lr(opt, 0.5)
    assert all(g["lr"] == 0.5 for g in opt.param_groups)
    assert get_lr(0, learning_rate=1.0, warmup_iters=9, lr_decay_iters=20, min_lr=0.1) == 0.1


def test_clip_grad_norm_scales_to_max_norm() -> None:
    model = torch_gpt.GPT(CFG, dtype="float64")
    idx, targets = _batch(CFG)
    _, loss = model(idx, targets)
    (loss * 100).backward()
    norm = clip_grad_norm(model, 0.5)
    after = math.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters()))
    assert norm > 0.5 and after == pytest.approx(0.5 * norm / (norm + 1e-6), rel=1e-9)


def test_precision_helpers_on_cpu() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not HAS_CUDA:
        with pytest.raises(ValueError, match="cuda"):
            resolve_device("cuda")
    model = torch_gpt.GPT(CFG)
    idx, targets = _batch(CFG)
    with autocast("cpu", "bfloat16"):
        logits, loss = model(idx, targets)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    with autocast("cpu", "float32"):
        assert model(idx)[0].dtype == torch.float32
    with pytest.raises(ValueError):
        autocast("cpu", "int8")
    assert not grad_scaler("cpu", "float16").is_enabled()
    assert maybe_compile(model, False) is model
    old = torch.backends.cuda.matmul.allow_tf32
    with tf32(not old):
        assert torch.backends.cuda.matmul.allow_tf32 is (not old)
    assert torch.backends.cuda.matmul.allow_tf32 is old


@pytest.mark.parametrize("attn", ["sdpa", "manual"])
def test_traces_as_one_graph_for_torch_compile(attn: str) -> None:
    """fullgraph=True fails on any graph break; the eager backend skips code generation."""
    cfg = CFG.replace(dropout=0.1)
    model = torch_gpt.GPT(cfg, attn=attn)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    idx, targets = _batch(cfg)
    _, loss = compiled(idx, targets)
    loss.backward()
    model.eval()
    assert torch.equal(compiled(idx)[0], model(idx)[0])


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_matches_cpu_in_float64() -> None:
    cpu = torch_gpt.GPT(CFG, dtype="float64", seed=2)
    gpu = torch_gpt.GPT(CFG, dtype="float64", seed=2, device="cuda")
    assert gpu.transformer.wte.weight.device.type == "cuda"
    idx, targets = _batch(CFG)
    lc, _ = cpu(idx, targets)
    lg, _ = gpu(idx.cuda(), targets.cuda())
    err = (lg.cpu() - lc).abs().max() / lc.abs().max()
    assert err <= tolerance("float64", "cuda", "forward")
    assert grad_scaler("cuda", "float16").is_enabled()
