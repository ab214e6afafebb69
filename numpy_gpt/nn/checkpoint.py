"""The checkpoint folder both twins read and write (DESIGN.md, STYLE.md K4).

    DIR/config.json            {"format_version", "model": GPTConfig, "tokenizer": kind|null, ...}
    DIR/model.safetensors      parameters by canonical name (float32 or float64)
    DIR/tokenizer.json         the tokenizer, when there is one
    DIR/optimizer.safetensors  AdamW moments, for exact resume (training checkpoints only)
    DIR/trainer_state.json     step, RNG states, data position, best val loss, train config

Framework-free: tensors are NumPy arrays; torch_gpt converts at its boundary. A folder is
written beside its destination and renamed into place, so a crash never leaves a
half-written checkpoint where a good one was. No pickle: safetensors and JSON only.

Deliberately omits: sharding, compression, bfloat16 storage (NumPy has no bfloat16).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ..files.safe_io import staged_dir, writing
from ..tokenizers import Tokenizer, load_tokenizer
from .config import ConfigError, GPTConfig, param_shapes
from .device import to_numpy

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
# in config.json of a fine-tuned checkpoint and in adapter_config.json of a LoRA adapter: the
# prompt format it was trained on (numpy_gpt.data.chat_format.TEMPLATES)
TEMPLATE_KEY = "chat_template"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"
# the checkpoint folders a `train` / `finetune` run leaves in its OUT, and what each holds
RUN_CHECKPOINTS = {"best": "the lowest val loss", "last": "the latest step",
                   "merged": "a LoRA fine-tune with its adapter folded in"}


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or does not match; the message says which."""


def save_checkpoint(
    path: str | os.PathLike,
    config: GPTConfig,
    params: dict[str, np.ndarray],
    *,
    tokenizer: Any = None,
    optimizer_state: dict[str, np.ndarray] | None = None,
    trainer_state: dict[str, Any] | None = None,
    extra_config: dict[str, Any] | None = None,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a checkpoint folder atomically; returns its path.

    `tokenizer` is anything with `to_dict()` and a `kind` (numpy_gpt.tokenizers). The existing
    folder at `path`, if any, is replaced only after the new one is completely on disk;
    `write_extra(tmp)` adds more files to the new folder before that. A write fault (disk
    full) is a safe_io.WriteError naming the file, with `path` left as it was.
    """
    path = Path(path)
    expected = param_shapes(config)
    _check_params(params, expected, where="save_checkpoint")
    with staged_dir(path) as tmp:
        meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "model": config.to_dict(),
            "dtype": str(next(iter(params.values())).dtype),
            "tokenizer": getattr(tokenizer, "kind", None),
        }
        meta.update(extra_config or {})
        with writing(path / CONFIG_FILE):
            _write_json(tmp / CONFIG_FILE, meta)
        with writing(path / MODEL_FILE):
            save_file(host_tensors({k: params[k] for k in expected}), str(tmp / MODEL_FILE))
        if tokenizer is not None:
            with writing(path / TOKENIZER_FILE):
                _write_json(tmp / TOKENIZER_FILE, tokenizer.to_dict())
        if optimizer_state is not None:
            with writing(path / OPTIMIZER_FILE):
                save_file(host_tensors(optimizer_state), str(tmp / OPTIMIZER_FILE))
        if trainer_state is not None:
            with writing(path / TRAINER_STATE_FILE):
                _write_json(tmp / TRAINER_STATE_FILE, trainer_state)
        if write_extra is not None:  # e.g. a LoRA run's adapter/, inside the same swap
            write_extra(tmp)
    return path


def host_tensors(tensors: dict[str, Any]) -> dict[str, np.ndarray]:
    """Contiguous NumPy copies (or the arrays themselves) for safetensors, from either device."""
    return {k: np.ascontiguousarray(to_numpy(v)) for k, v in tensors.items()}


def load_checkpoint(path: str | os.PathLike) -> tuple[GPTConfig, dict[str, np.ndarray], dict]:
    """Read config and parameters; returns (config, params, meta). Raises CheckpointError."""
    path = Path(path)
    meta = read_meta(path)
    try:
        config = GPTConfig.from_dict(meta["model"])
    except (ConfigError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path / CONFIG_FILE}: bad model config: {e}") from None
    params = _load_tensors(path / MODEL_FILE)
    _check_params(params, param_shapes(config), where=str(path / MODEL_FILE))
    return config, params, meta


def checkpoint_arch(path: str | os.PathLike) -> str:
    """A checkpoint folder's architecture in one line, for a command's header
    (GPTConfig.describe_arch: 'llama (rmsnorm, rope halves theta 10000, ...)')."""
    return GPTConfig.from_dict(read_meta(path)["model"]).describe_arch()


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """config.json of a checkpoint folder, with its format version checked."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"no checkpoint folder at {path}: pass the folder that holds {CONFIG_FILE} "
            f"and {MODEL_FILE} (e.g. out/<run>/best)"
        )
    inside = [path / n for n in RUN_CHECKPOINTS if (path / n / CONFIG_FILE).is_file()]
    if inside and not (path / CONFIG_FILE).exists():
        raise CheckpointError(
            f"{path} is a training run's folder, not a checkpoint: pass "
            + " or ".join(f"{p} ({RUN_CHECKPOINTS[p.name]})" for p in inside))
    meta = read_json(path / CONFIG_FILE, what="checkpoint config")
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: format_version {version!r} is not supported "
            f"(this code reads version {FORMAT_VERSION})"
        )
    if not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"{path / CONFIG_FILE}: no 'model' section")
    return meta


def params_fingerprint(params: dict[str, Any]) -> str:
    """sha256 (hex) of a model's weights: for each canonical name in sorted order, the name,
    the shape and the values as little-endian float32. Cheap (one pass, no copy of float32
    arrays) and deterministic; the same weights give the same fingerprint in either twin, on
    either device and in float32 or float64 (a float64 copy of float32 weights hashes the same),
    so an adapter can name the base it was trained on (numpy_gpt.nn.lora)."""
    h = hashlib.sha256()
    for name in sorted(params):
        a = np.ascontiguousarray(to_numpy(params[name]), dtype="<f4")
        h.update(f"{name}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def checkpoint_fingerprint(path: str | os.PathLike) -> str:
    """params_fingerprint of a checkpoint folder's weights."""
    return params_fingerprint(load_checkpoint(path)[1])


def load_optimizer_state(path: str | os.PathLike) -> dict[str, np.ndarray]:
    return _load_tensors(Path(path) / OPTIMIZER_FILE)


def load_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(path) / TRAINER_STATE_FILE, what="trainer state")


def read_json(file: Path, *, what: str) -> Any:
    if not file.is_file():
        raise CheckpointError(f"missing {what} file {file}")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON ({e}); the file is corrupt") from None


def _load_tensors(file: Path) -> dict[str, np.ndarray]:
    if not file.is_file():
        raise CheckpointError(f"missing tensor file {file}")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{file} is truncated or corrupt ({e}); restore it or use another checkpoint"
        ) from None


def _check_params(
    params: dict[str, Any], expected: dict[str, tuple[int, ...]], *, where: str
) -> None:
    missing = [k for k in expected if k not in params]
    extra = [k for k in params if k not in expected]
    if missing or extra:
        raise CheckpointError(
            f"{where}: parameter names do not match the config "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''})"
        )
    for k, shape in expected.items():
        if tuple(params[k].shape) != shape:
            raise CheckpointError(
                f"{where}: {k} has shape {tuple(params[k].shape)} but the config needs {shape}"
            )


def _write_json(file: Path, obj: Any) -> None:
    file.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def checkpoint_tokenizer(ckpt: str | Path) -> Tokenizer:
    """The tokenizer saved in a checkpoint folder; a clear error when there is none."""
    ckpt = Path(ckpt)
    read_meta(ckpt)  # a missing or corrupt folder says so first
    if not (ckpt / TOKENIZER_FILE).is_file():
        raise CheckpointError(
            f"{ckpt} has no {TOKENIZER_FILE}: sampling needs the tokenizer the model was "
            "trained with; save the checkpoint with it (model.save(dir, tokenizer=tok))"
        )
    return load_tokenizer(ckpt / TOKENIZER_FILE)
