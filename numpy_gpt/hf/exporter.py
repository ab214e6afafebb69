"""Export a checkpoint folder to Hugging Face's GPT-2 or Llama layout, framework-free (no torch).

    notes = export_hf("out/run/best", "out/run/hf")        # -> lines saying what was written
    model = transformers.GPT2LMHeadModel.from_pretrained("out/run/hf")   # GPT-2 blocks
    model = transformers.LlamaForCausalLM.from_pretrained("out/run/hf")  # Llama blocks

A Llama-shaped checkpoint (RMSNorm, RoPE, SwiGLU; numpy_gpt/hf/llama.py has its map, and how
an interleaved RoPE is written for HF's rotate_half) becomes a LlamaForCausalLM folder; a
GPT-2-shaped one a GPT2LMHeadModel folder, as below. Any other block is refused.

The reverse of numpy_gpt.hf.importer, and what maps to what:

    GPTConfig                            HF config.json (GPT2Config)
      vocab_size, n_layer/head/embd        vocab_size, n_layer, n_head, n_embd (n_inner null = 4C)
      block_size                           n_positions (and n_ctx, for older transformers)
      gelu "tanh" | "exact"                activation_function "gelu_new" | "gelu"
      layer_norm_eps                       layer_norm_epsilon
      dropout                              resid_pdrop, embd_pdrop, attn_pdrop (nanoGPT's sites)
      tie_weights                          tie_word_embeddings
      bias False                           zero biases: HF GPT-2 always has them, and adding
                                           zero computes exactly what no bias computes
      the tokenizer's <|endoftext|>        bos_token_id, eos_token_id (null when there is none)
    params (canonical names)             model.safetensors, same names and dtype; the four
                                         projection weights transposed to Conv1D (in, out);
                                         lm_head.weight only when the head is untied

A byte-level BPE tokenizer (GPT-2's, or ours trained with GPT-2's split pattern) becomes
vocab.json + merges.txt + tokenizer_config.json, which GPT2TokenizerFast loads and encodes to
the same ids. GPT-2's merges are not stored in our tokenizer.json (only its ranks are); each
merge is rebuilt by running the byte-level merge of a token limited to lower ranks, which
leaves exactly the two parts it was made of (tiktoken's rule; it reproduces OpenAI's
vocab.bpe line for line). Char and word tokenizers have no HF GPT-2 equivalent: their
tokenizer.json is copied as numpy_gpt_tokenizer.json and the notes say so.

The folder is written beside OUT and renamed into place, after every check has passed, so a
refusal or a crash leaves nothing half-written. Refused, with the reason: an adapter-only
folder and a LoRA run's best/ or last/ (its weights are the frozen base), a config field HF
GPT-2 has no equivalent for, an existing OUT without overwrite.

Deliberately omits: sharded weights, HF's tokenizer.json (fast-tokenizer) file, a
generation_config.json (transformers derives it from config.json), formats other than HF.
Ref: transformers models/gpt2 (configuration_gpt2.py, modeling_gpt2.py Conv1D),
tokenization_gpt2.py; tiktoken load.py / convert_slow_tokenizer's TikTokenConverter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from ..files.safe_io import WriteError, staged_dir, writing
from ..nn.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    CheckpointError,
    load_checkpoint,
)
from ..nn.config import GPTConfig, param_shapes
from ..nn.lora import ADAPTER_CONFIG
from ..tokenizers import Tokenizer, TokenizerError, load_tokenizer
from ..tokenizers.bytelevel import GPT2_SPLIT_PATTERN
from ..tokenizers.gpt2 import bytes_to_unicode
from .importer import CONV1D_WEIGHTS
from .llama import (
    canonical_to_hf_llama,
    gpt_config_to_hf_llama,
    is_llama,
    token_and_dtype_fields,
)

FORMATS = ("hf",)
ACTIVATION_BY_GELU = {"tanh": "gelu_new", "exact": "gelu"}  # inverse of GELU_BY_ACTIVATION
# GPTConfig fields this module maps; a field added later must be mapped (or refused) here
# before a checkpoint using it can be exported.
MAPPED_FIELDS = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias",
                 "tie_weights", "gelu", "layer_norm_eps",
                 # the Llama family's, checked by hf_architecture (GPT-2: their defaults)
                 "norm", "position", "rope_theta", "rope_layout", "mlp", "ffn_hidden",
                 "n_kv_head",
                 # how numpy_gpt computes attention, not what: HF picks its own kernel
                 "attention", "attention_tile")
ADAPTER_DIR = "adapter"  # a LoRA run's best/ and last/ hold the frozen base + adapter/
OUR_TOKENIZER_FILE = "numpy_gpt_tokenizer.json"  # not "tokenizer.json": HF reads that name


class HFExportError(ValueError):
    """A checkpoint or destination that cannot be exported; the message says why."""


def export_hf(ckpt: str | os.PathLike, out: str | os.PathLike, *,
              overwrite: bool = False, on_checked: Callable[[], None] | None = None
              ) -> list[str]:
    """Write checkpoint folder `ckpt` as a Hugging Face GPT-2 folder at `out` (atomically).
    Returns one line per thing worth saying (what was and was not exported). `on_checked` is
    called once every check has passed, just before writing (the command line prints its plan
    there, so a refusal is its error line alone)."""
    ckpt, out = Path(ckpt), Path(out)
    refuse_adapter(ckpt)
    config, params, meta = load_checkpoint(ckpt)
    check_out(out, ckpt, overwrite)
    notes = []
    unmapped = sorted(set(config.to_dict()) - set(MAPPED_FIELDS))
    if unmapped:
        raise HFExportError(f"{ckpt}: config field(s) {unmapped} have no HF equivalent this "
                            "exporter knows; refusing rather than export another model")
    llama = hf_architecture(config, ckpt) == "llama"
    notes.append(f"architecture: {config.describe_arch()} -> "
                 f"{'LlamaForCausalLM' if llama else 'GPT2LMHeadModel'}")
    notes += llama_notes(config) if llama else []
    if not config.bias and not llama:
        notes.append("bias=False: written as zero biases (HF GPT-2 always has biases; adding "
                     "zero computes exactly the same model)")
    if not config.tie_weights:
        notes.append("untied head: tie_word_embeddings=false and lm_head.weight written")
    tokenizer = _read_tokenizer(ckpt, meta)
    files, tok_note = hf_tokenizer_files(tokenizer, config)
    notes.append(tok_note)
    eot = tokenizer.eot_id if tokenizer is not None else None
    if eot is not None and not 0 <= eot < config.vocab_size:
        eot = None
    dtype = str(next(iter(params.values())).dtype)
    if llama:
        hf_config = gpt_config_to_hf_llama(config, eot_id=eot, dtype=dtype)
        tensors = canonical_to_hf_llama(params, config)
    else:
        hf_config = gpt_config_to_hf(config, eot_id=eot, dtype=dtype)
        tensors = canonical_to_hf(params, config)

    if on_checked is not None:
        on_checked()
    existed = out.exists()
    try:
        with staged_dir(out) as tmp:  # a fault leaves OUT as it was
            with writing(out / CONFIG_FILE):
                _write_json(tmp / CONFIG_FILE, hf_config)  # HF uses the same two file names
            with writing(out / MODEL_FILE):
                save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": "pt"})
            for name, text in files.items():
                with writing(out / name):
                    (tmp / name).write_text(text, encoding="utf-8")
    except WriteError as e:
        raise e.with_advice(f"{out} {'is unchanged' if existed else 'was not created'} and "
                            f"{ckpt} is untouched; free space and export again") from None
    return notes


def gpt_config_to_hf(config: GPTConfig, *, eot_id: int | None = None,
                     dtype: str = "float32") -> dict[str, Any]:
    """GPT2Config's fields for `config` (the inverse of importer.hf_config_to_gpt)."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,  # 4 * n_embd
        "activation_function": ACTIVATION_BY_GELU[config.gelu],
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.layer_norm_eps,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": config.tie_weights,
        **token_and_dtype_fields(eot_id, dtype),
    }


def hf_architecture(config: GPTConfig, ckpt: Path) -> str:
    """"gpt2" or "llama": the HF model that computes `config`'s block; HFExportError when
    none does (another combination of norm, position and MLP, or GPT-2 with grouped heads or
    another MLP width)."""
    if is_llama(config):
        return "llama"
    if config.arch != "gpt2":
        raise HFExportError(f"{ckpt}: {config.describe_arch()} is neither GPT-2's block nor "
                            "Llama's; no Hugging Face model computes it, so it cannot be "
                            "exported")
    if config.kv_heads != config.n_head or config.ffn_width != 4 * config.n_embd:
        raise HFExportError(f"{ckpt}: HF GPT-2 has n_kv_head = n_head and an MLP of 4 n_embd; "
                            f"this model has {config.describe_arch()}")
    return "gpt2"


def llama_notes(config: GPTConfig) -> list[str]:
    """What a Llama export changes on the way (numpy_gpt/hf/llama.py has the whole map)."""
    notes = []
    if config.rope_layout == "interleaved":
        notes.append("rope_layout interleaved: HF Llama rotates halves (rotate_half), so each "
                     "head's q and k rows are permuted (2i, 2i+1) -> (i, i + hs/2), as HF's "
                     "convert_llama_weights_to_hf does; same attention scores, and importing "
                     "the export gives a halves model")
    if config.bias:
        notes.append("bias=True: attention_bias and mlp_bias true (HF Llama's q/k/v/o and "
                     "gate/up/down biases)")
    if config.dropout:
        notes.append(f"dropout {config.dropout}: HF Llama has attention_dropout only, written "
                     "there (inference is unaffected)")
    return notes


def canonical_to_hf(params: dict[str, np.ndarray], config: GPTConfig) -> dict[str, np.ndarray]:
    """HF GPT-2 tensors from our params: the same names, Conv1D weights transposed to
    (in, out), zero biases where bias=False (the inverse of importer.hf_to_canonical)."""
    dtype = next(iter(params.values())).dtype
    tensors = {}
    for name, shape in param_shapes(config.replace(bias=True)).items():
        value = params[name] if name in params else np.zeros(shape, dtype)  # bias=False
        if name.endswith(CONV1D_WEIGHTS):
            value = value.T  # Linear (out, in) -> Conv1D (in, out)
        tensors[name] = np.ascontiguousarray(value)
    return tensors


def hf_tokenizer_files(tokenizer: Tokenizer | None,
                       config: GPTConfig) -> tuple[dict[str, str], str]:
    """({file name: text}, one line saying what was and was not exported)."""
    if tokenizer is None:
        return {}, "tokenizer: none in the checkpoint, so none exported (weights only)"
    own = {OUR_TOKENIZER_FILE: json.dumps(tokenizer.to_dict()) + "\n"}
    load_ours = (f"{OUR_TOKENIZER_FILE} (numpy_gpt.tokenizers.load_tokenizer reads it) "
                 "written instead")
    try:
        vocab, merges = byte_level_vocab_merges(tokenizer)
    except HFExportError as e:
        return own, (f"tokenizer: {tokenizer.kind} not exported for Hugging Face ({e}); "
                     f"{load_ours}, so AutoTokenizer cannot load this folder")
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False) + "\n",
        "merges.txt": "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
    }
    files.update(_tokenizer_config(tokenizer, config))
    return files, (f"tokenizer: {tokenizer.kind} exported as vocab.json + merges.txt + "
                   "tokenizer_config.json (GPT2TokenizerFast gives the same ids)")


def byte_level_vocab_merges(tokenizer: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """HF's vocab (GPT-2 alphabet string -> id) and merges (in rank order) for a byte-level BPE
    tokenizer; HFExportError when HF's byte-level BPE would encode differently."""
    if tokenizer.kind not in ("gpt2", "bpe"):
        raise HFExportError(f"HF GPT-2 tokenizers are byte-level BPE, not {tokenizer.kind}")
    if tokenizer.pattern != GPT2_SPLIT_PATTERN:
        raise HFExportError("its split pattern is not GPT-2's")
    token_bytes = tokenizer.token_bytes
    if sorted(token_bytes[:256]) != [bytes([b]) for b in range(256)]:
        raise HFExportError("its first 256 ids are not the 256 single bytes")
    if len(set(token_bytes)) != len(token_bytes):
        raise HFExportError("two ids stand for the same bytes, which HF's vocab cannot hold")
    b2u = bytes_to_unicode()

    def spell(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    vocab = {spell(b): i for i, b in enumerate(token_bytes)}
    vocab.update(tokenizer.special_tokens)
    if tokenizer.kind == "bpe":  # merges stored as id pairs, in training order = rank
        pairs = [(token_bytes[a], token_bytes[b]) for a, b in tokenizer.merges]
    else:  # gpt2: id = rank; rebuild each merge from the ranks
        pairs = [_split_at_rank(tokenizer.ranks, token_bytes[i], i)
                 for i in range(256, len(token_bytes))]
    return vocab, [(spell(a), spell(b)) for a, b in pairs]


def _split_at_rank(ranks: dict[bytes, int], token: bytes, rank: int) -> tuple[bytes, bytes]:
    """The two parts token `rank` was merged from: merge its bytes (lowest rank first) using
    only tokens of lower rank; what is left is the last merge's pair."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        found = [(r, i) for i in range(len(parts) - 1)
                 if (r := ranks.get(parts[i] + parts[i + 1], rank)) < rank]
        if not found:
            break
        _, i = min(found)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2:
        raise HFExportError(f"token {rank} ({token!r}) is not a merge of two lower-ranked tokens")
    return parts[0], parts[1]


def _tokenizer_config(tokenizer: Tokenizer, config: GPTConfig) -> dict[str, str]:
    """tokenizer_config.json + special_tokens_map.json: the special tokens, GPT-2's settings."""
    eot = tokenizer.eot_token
    specials = {"bos_token": eot, "eos_token": eot, "unk_token": eot}
    extra = [s for s in tokenizer.special_tokens if s != eot]
    if extra:
        specials["additional_special_tokens"] = extra
    added = {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": True}
             for s, i in sorted(tokenizer.special_tokens.items(), key=lambda kv: kv[1])}
    tok_config = {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False,
                  "errors": "replace", "model_max_length": config.block_size,
                  "added_tokens_decoder": added, **specials}
    return {"tokenizer_config.json": json.dumps(tok_config, indent=2) + "\n",
            "special_tokens_map.json": json.dumps(specials, indent=2) + "\n"}


def refuse_adapter(ckpt: Path) -> None:
    """A LoRA adapter folder, or a LoRA run's best/ or last/ (base weights + adapter/), is not
    the fine-tuned model: say which folder to export instead."""
    if (ckpt / ADAPTER_CONFIG).is_file() and not (ckpt / CONFIG_FILE).is_file():
        raise HFExportError(f"{ckpt} is a LoRA adapter only, not a model: export the run's "
                            "merged/ folder (the model with the adapter folded in)")
    if (ckpt / ADAPTER_DIR / ADAPTER_CONFIG).is_file():
        raise HFExportError(f"{ckpt} holds the frozen base weights of a LoRA run, not the "
                            "fine-tuned model: export the run's merged/ folder")


def check_out(out: Path, ckpt: Path, overwrite: bool) -> None:
    """Refuse a destination that exists (unless overwrite), is a file, is not an earlier
    export, or would take the checkpoint with it."""
    target, source = out.resolve(), ckpt.resolve()
    if target == source or target in source.parents:
        raise HFExportError(f"--out {out} would replace the checkpoint {ckpt} itself; "
                            "choose another folder")
    if out.is_file():
        raise HFExportError(f"--out {out} is a file; give a folder to create")
    if not out.exists():
        return
    if not overwrite:
        raise HFExportError(f"--out {out} already exists; pass --overwrite to replace it")
    if any(out.iterdir()) and _hf_model_type(out) not in ("gpt2", "llama"):
        raise HFExportError(f"--out {out} is not empty and not an HF GPT-2 or Llama folder; "
                            "refusing to replace it even with --overwrite")


def _hf_model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def _read_tokenizer(ckpt: Path, meta: dict[str, Any]) -> Tokenizer | None:
    file = ckpt / TOKENIZER_FILE
    if not file.is_file():
        if meta.get("tokenizer"):
            raise CheckpointError(f"{ckpt}: config.json names a {meta['tokenizer']} tokenizer "
                                  f"but {TOKENIZER_FILE} is missing")
        return None
    try:
        return load_tokenizer(file)
    except TokenizerError as e:
        raise CheckpointError(f"{file}: {e}") from None


def _write_json(file: Path, obj: Any) -> None:
    file.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")

