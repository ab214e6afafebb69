"""Hugging Face LlamaForCausalLM folders in and out (numpy_gpt/hf/llama.py), checked by
transformers.

An export must load in LlamaForCausalLM with nothing missing, unexpected or warned about, give
our logits (float64 <= 1e-12 once HF's two float32 pieces are made dtype-preserving by
parity/hf_llama.py; stock HF in float32 <= 1e-5) and our greedy tokens, and import back bit
for bit (an interleaved RoPE comes back as halves with q/k rows permuted: the same logits).
A random LlamaForCausalLM saved by save_pretrained imports into both twins. What does not map
(rope scaling, attention biases without MLP biases, a sliding window, another architecture)
is refused in one line; bad exports write nothing. Skipped without transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import torch_gpt
from numpy_gpt import GPT
from numpy_gpt.cli.main import main
from numpy_gpt.hf.exporter import export_hf
from numpy_gpt.hf.importer import HFImportError, load_hf, load_hf_gpt2
from numpy_gpt.hf.llama import interleaved_to_halves
from numpy_gpt.nn.config import GPTConfig, arch_fields
from parity.tolerances import tolerance

transformers = pytest.importorskip("transformers", reason="transformers is not installed")
torch = pytest.importorskip("torch", reason="torch is not installed")
from test_hf_export import _hf_load as _hf_load_as
from test_hf_export import _model, assert_same_greedy_tokens

from parity.hf_llama import exact_float64

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LLAMA = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_embd=16,
                  **arch_fields("llama", 4))  # GQA 4 q / 2 kv, untied, no bias, halves
CASES = {
    "gqa-untied": LLAMA,
    "interleaved": LLAMA.replace(rope_layout="interleaved"),
    "mqa-tied-theta": LLAMA.replace(n_kv_head=1, tie_weights=True, rope_theta=500000.0,
                                    layer_norm_eps=1e-6),
    "mha-bias-ffn": LLAMA.replace(n_kv_head=None, bias=True, ffn_hidden=20),
}


def _hf_load(out: Path):
    """LlamaForCausalLM.from_pretrained(out), nothing missing, unexpected or logged."""
    return _hf_load_as(out, "LlamaForCausalLM")


def _err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("case", list(CASES))
def test_export_loads_in_llama_and_matches(tmp_path: Path, case: str) -> None:
    cfg = CASES[case]
    ours = _model(cfg)
    ours.save(tmp_path / "ck")
    notes = export_hf(tmp_path / "ck", tmp_path / "hf")
    assert any("-> LlamaForCausalLM" in n for n in notes), notes
    hf = _hf_load(tmp_path / "hf")
    assert hf.dtype == torch.float64

    idx = np.random.default_rng(1).integers(0, cfg.vocab_size, size=(2, cfg.block_size))
    logits = ours.forward(idx)[0]
    with torch.no_grad():
        stock = _hf_load(tmp_path / "hf").float()(torch.from_numpy(idx)).logits.double()
        exact_float64(hf)
        exact = hf(torch.from_numpy(idx)).logits.numpy()
    assert _err(stock.numpy(), logits) <= tolerance("float32", "cpu", "forward")
    assert _err(exact, logits) <= tolerance("float64", "cpu", "forward")

    assert_same_greedy_tokens(ours, hf)

    back_cfg, back = load_hf(tmp_path / "hf", dtype="float64")
    if cfg.rope_layout == "interleaved":  # halves now, q and k rows permuted per head
        assert back_cfg == cfg.replace(rope_layout="halves")
        q_rows = interleaved_to_halves(cfg.n_head, cfg.head_size)
        w = ours.params["transformer.h.0.attn.c_attn.weight"]
        assert np.array_equal(back["transformer.h.0.attn.c_attn.weight"][:16], w[:16][q_rows])
        assert _err(GPT.from_params(back_cfg, back, "float64").forward(idx)[0], logits) <= 1e-12
    else:
        assert back_cfg.replace(n_kv_head=back_cfg.kv_heads) == cfg.replace(
            n_kv_head=cfg.kv_heads)
        assert list(back) == list(ours.params)
        for name, value in ours.params.items():
            assert back[name].dtype == value.dtype and np.array_equal(back[name], value), name


def test_config_json_is_llamas(tmp_path: Path) -> None:
    _model(CASES["mqa-tied-theta"], "float32").save(tmp_path / "ck")
    export_hf(tmp_path / "ck", tmp_path / "hf")
    hf = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf["model_type"] == "llama" and hf["architectures"] == ["LlamaForCausalLM"]
    assert (hf["hidden_size"], hf["num_attention_heads"], hf["num_key_value_heads"],
            hf["intermediate_size"], hf["max_position_embeddings"]) == (16, 4, 1, 64, 16)
    assert hf["rope_theta"] == 500000.0 and hf["rms_norm_eps"] == 1e-6
    assert hf["tie_word_embeddings"] is True and hf["rope_scaling"] is None
    from safetensors.numpy import load_file

    names = set(load_file(str(tmp_path / "hf" / "model.safetensors")))
    assert "lm_head.weight" not in names and "model.layers.1.mlp.gate_proj.weight" in names
    with pytest.raises(HFImportError, match="holds a llama model, not GPT-2"):
        load_hf_gpt2(tmp_path / "hf")


@pytest.fixture(scope="module")
def saved_hf_llama(tmp_path_factory: pytest.TempPathFactory):
    """A random LlamaForCausalLM (GQA, untied) saved with save_pretrained."""
    hf_cfg = transformers.LlamaConfig(
        vocab_size=11, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)  # transformers' init draws from the global RNG
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    with torch.no_grad():  # RMSNorm weights are 1 at init: make every tensor matter
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("hf_llama")
    hf.save_pretrained(path)
    return hf, path


def test_transformers_llama_imports_into_both_twins(saved_hf_llama) -> None:
    hf, path = saved_hf_llama
    idx = torch.randint(0, 11, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(idx).logits.double().numpy()
    config, params = load_hf(path)
    assert (config.arch, config.kv_heads, config.ffn_width, config.tie_weights) == (
        "llama", 2, 24, False)
    got_n = GPT.from_params(config, params, dtype="float32").forward(idx.numpy())[0]
    got_t = torch_gpt.GPT.from_hf(path)(idx)[0].detach().double().numpy()
    tol = tolerance("float32", "cpu", "forward")
    assert _err(got_n.astype(np.float64), expected) <= tol
    assert _err(got_t, expected) <= tol


def _hf_folder(src: Path, dst: Path, **changes) -> Path:
    dst.mkdir()
    (dst / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    hf = json.loads((src / "config.json").read_text()) | changes
    (dst / "config.json").write_text(json.dumps(hf))
    return dst


@pytest.mark.parametrize(("changes", "says"), [
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0},
      "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}},
     "rope scaling 'linear' is not supported"),
    ({"attention_bias": True}, "attention_bias=true with mlp_bias=false does not map"),
    ({"sliding_window": 4}, "sliding_window=4 is not supported"),
    ({"model_type": "mistral", "architectures": ["MistralForCausalLM"]},
     "holds a 'mistral' model (MistralForCausalLM)"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported"),
    ({"num_key_value_heads": 3}, "n_kv_head (3) must divide n_head (4)"),
])
def test_what_does_not_map_is_refused_in_one_line(saved_hf_llama, tmp_path: Path,
                                                   changes: dict, says: str) -> None:
    folder = _hf_folder(saved_hf_llama[1], tmp_path / "bad", **changes)
    for load in (load_hf, torch_gpt.GPT.from_hf):
        with pytest.raises(HFImportError) as e:
            load(folder)
        assert says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_missing_weight_is_named(saved_hf_llama, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = _hf_folder(saved_hf_llama[1], tmp_path / "d")
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["model.layers.1.self_attn.k_proj.weight"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(HFImportError, match=r"missing \['transformer.h.1.attn.c_attn.weight'\]"):
        load_hf(folder)


def test_unexportable_block_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    """GPT-2 with RoPE (a custom block), and GPT-2 with grouped heads: no HF model."""
    for name, cfg in (("rope", GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2,
                                         n_embd=8, position="rope")),
                      ("gqa", GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2,
                                        n_embd=8, n_kv_head=1))):
        _model(cfg, "float32").save(tmp_path / name)
        before = sorted(tmp_path.rglob("*"))
        assert main(["export", "--ckpt", str(tmp_path / name), "--out",
                     str(tmp_path / "out")]) == 1
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and captured.out == ""
        assert ("neither GPT-2's block nor Llama's" if name == "rope"
                else "n_kv_head = n_head") in lines[0]
        assert sorted(tmp_path.rglob("*")) == before


def test_cli_exports_a_llama_and_overwrites_a_llama_folder(tmp_path: Path, capsys) -> None:
    _model(LLAMA, "float32").save(tmp_path / "ck")
    args = ["export", "--ckpt", str(tmp_path / "ck"), "--out", str(tmp_path / "hf")]
    assert main(args) == 0
    assert "LlamaForCausalLM" in capsys.readouterr().out
    assert main([*args, "--overwrite"]) == 0  # an earlier Llama export may be replaced
    _hf_load(tmp_path / "hf")
