"""What a `train` or `finetune` run will do, resolved and checked before anything is written.

The command line's one rule: a run is resolved, validated and printed before it starts, and it
is exactly what runs. A setting that cannot apply is an error naming it and the way out, never
dropped and never honoured in the log only:

  * --resume continues with the settings stored in OUT/last; only RESUMABLE ones may change
    (how long the run goes on, its evaluation cadence, the tail of its learning-rate schedule,
    where it runs). Any other flag that differs from the stored value is refused, and so are
    --preset and --config (they would re-decide what the run is).
  * --init-from CKPT trains the checkpoint's model: its shape and tokenizer must be the run's,
    so a shape flag that differs, or data encoded with another tokenizer, is refused, and the
    resolved config carries the checkpoint's real sizes (what the header prints and the state
    stores).
  * the dataset is an existing prepared folder or a named dataset (a missing folder says so).
  * a size that cannot fit in this machine's memory is refused with the estimate.

Deliberately omits: GPU memory checks (the estimate is for the CPU, where the run would swap or
die), and anything the loop itself decides while it runs (divergence, early stopping).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..data.dataset import DataError, TokenDataset
from ..files.safe_io import recover_moved_aside
from ..nn import checkpoint as ckpt
from ..nn.config import GPTConfig
from .config import TrainConfig

# May change on --resume: they steer how long the run goes on, how often it is evaluated, the
# tail of its learning-rate schedule, what is printed, and where it runs. Everything else (the
# model, the data and its tokenizer, the optimizer, the seed, the dtype) is what the run is.
RESUMABLE = ("max_iters", "lr_decay_iters", "min_lr", "eval_interval", "eval_iters",
             "log_interval", "patience", "sample_tokens", "device", "threads", "compile")
# the model's shape, as TrainConfig and GPTConfig both name it (block_size is handled apart)
SHAPE_FIELDS = ("n_layer", "n_head", "n_embd", "bias", "tie_weights", "gelu", "arch", "norm",
                "position", "rope_theta", "rope_layout", "mlp", "ffn_hidden", "n_kv_head")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def setting(name: str, value: Any) -> str:
    """A setting as its flag would be written: --n-embd 128, --bias, --no-tie-weights."""
    if isinstance(value, bool):
        return flag(name) if value else "--no-" + name.replace("_", "-")
    return f"{flag(name)} {value}"


def resumable_flags() -> str:
    return ", ".join(flag(n) for n in RESUMABLE)


# ---------------------------------------------------------------------------- --resume


def resumed_config(out_dir: Path, overrides: dict[str, Any]
                   ) -> tuple[TrainConfig, dict[str, Any]]:
    """(the run's TrainConfig with the RESUMABLE flags given now applied, its trainer state).
    A flag that would change anything else is a ValueError naming it. `out` is where the run
    is now (it may have been moved), not a setting."""
    recover_moved_aside(out_dir / "last")  # a run killed in the middle of swapping last/
    if not (out_dir / "last").is_dir():
        raise ValueError(f"--resume: there is no run in {out_dir} (no {out_dir / 'last'}); pass "
                         "--out DIR, the folder of the run to continue")
    state = ckpt.load_trainer_state(out_dir / "last")
    stored = TrainConfig.from_dict(state["train_config"])
    given = {k: v for k, v in overrides.items() if v is not None and k != "out"}
    fixed = [(k, v) for k, v in given.items() if k not in RESUMABLE and v != getattr(stored, k)]
    if fixed:
        asked = ", ".join(f"{flag(k)} {v}" for k, v in fixed)
        was = ", ".join(f"{k}={getattr(stored, k)!r}" for k, _ in fixed)
        raise ValueError(
            f"{asked}: cannot change on --resume (the run in {out_dir} has {was}); drop it, or "
            f"start a new run with --out NEWDIR. On resume only these may change: "
            f"{resumable_flags()}")
    changes = {k: v for k, v in given.items() if k in RESUMABLE}
    at = int(state["iter"])
    if changes.get("max_iters", at) < at:
        raise ValueError(f"--max-iters {changes['max_iters']}: the run in {out_dir} is already "
                         f"at iteration {at}; to train further, pass a --max-iters above {at}")
    return stored.replace(**changes, out=str(out_dir)), state


def refuse_settings_files_on_resume(preset: str | None, config_file: str | None,
                                    out_dir: Path) -> None:
    """--preset / --config would re-decide the whole run: not with --resume."""
    for name, value in (("--preset", preset), ("--config", config_file)):
        if value is not None:
            raise ValueError(
                f"{name} {value} cannot be used with --resume: a resumed run keeps the settings "
                f"stored in {out_dir / 'last'}; resume with --resume --out {out_dir} and only "
                f"the flags that may change ({resumable_flags()})")


def refuse_lora_run(out_dir: Path) -> None:
    """`train --resume` on a LoRA fine-tune: its optimizer holds only the adapters."""
    from .finetune import ADAPTER_DIR

    if (out_dir / "last" / ADAPTER_DIR).is_dir():
        raise ValueError(f"{out_dir} holds a LoRA fine-tuning run, which `train` cannot "
                         f"continue; continue it with: finetune --resume --out {out_dir}")


def resume_line(out_dir: Path, state: dict[str, Any], tcfg: TrainConfig) -> str:
    return (f"resuming {out_dir / 'last'} from iteration {state['iter']} of {tcfg.max_iters} "
            f"({float(state.get('elapsed_s', 0.0)):.1f} s trained so far)")


# ---------------------------------------------------------------------------- --init-from


def init_from_config(tcfg: TrainConfig, given: dict[str, Any], dataset: TokenDataset
                     ) -> TrainConfig:
    """`tcfg` with the shape of its --init-from checkpoint. `given` maps each setting that was
    asked for to (value, where it came from: "--preset NAME", "--config FILE" or None for a
    flag); a shape setting that differs, or a dataset encoded with another tokenizer, is a
    ValueError."""
    init = Path(tcfg.init_from)
    stored = GPTConfig.from_dict(ckpt.read_meta(init)["model"])
    check_tokenizer(init, dataset, "--init-from",
                    f"train on data encoded with the checkpoint's tokenizer (finetune --ckpt "
                    f"{init} --dataset NAME prepares it) or drop --init-from")
    shape = stored_shape(stored)
    wrong = [f for f in SHAPE_FIELDS if f in given and given[f][0] != shape[f]]
    if wrong:
        asked = ", ".join(setting(f, given[f][0])
                          + (f" (from {given[f][1]})" if given[f][1] else "") for f in wrong)
        raise ValueError(
            f"{asked}: --init-from {init} is a "
            f"model with {', '.join(f'{f}={shape[f]!r}' for f in wrong)}; drop the "
            "setting (the checkpoint's shape is used) or train from scratch without "
            "--init-from")
    pad, where = given.get("pad_vocab_to", (None, None))
    if pad is not None and tcfg.model_vocab_size(dataset.vocab_size) != stored.vocab_size:
        raise ValueError(
            f"{setting('pad_vocab_to', pad)}{f' (from {where})' if where else ''}: --init-from "
            f"{init} has vocab_size {stored.vocab_size}, not "
            f"{tcfg.model_vocab_size(dataset.vocab_size)}; drop the setting (the checkpoint's "
            "vocabulary is used)")
    block = given.get("block_size", (None, None))[0]
    if block is not None and block > stored.block_size:
        raise ValueError(f"--block-size {block} exceeds the block_size {stored.block_size} of "
                         f"--init-from {init}; pass --block-size {stored.block_size} or less")
    if shape["arch"] == "custom":  # no name for it: every architecture field is explicit
        shape["arch"] = tcfg.arch
    return tcfg.replace(**shape, block_size=block or stored.block_size)


def stored_shape(stored: GPTConfig) -> dict[str, Any]:
    """A checkpoint's SHAPE_FIELDS as a TrainConfig holds them: the effective n_kv_head and
    ffn_hidden (not None), and arch by name ("custom" when no name fits)."""
    shape = {f: getattr(stored, f) for f in SHAPE_FIELDS}
    shape.update(n_kv_head=stored.kv_heads, ffn_hidden=stored.ffn_width)
    return shape


def check_tokenizer(folder: Path, dataset: TokenDataset, what: str, fix: str) -> None:
    """ValueError unless `dataset` was encoded with exactly the tokenizer of checkpoint
    `folder` (the ids would mean other tokens); `fix` says what to do instead."""
    from ..nn.checkpoint import checkpoint_tokenizer

    model_tok, data_tok = checkpoint_tokenizer(folder), dataset.tokenizer()
    if model_tok.to_dict() == data_tok.to_dict():
        return
    raise ValueError(
        f"{what} {folder} has a {model_tok.kind} tokenizer with vocab_size "
        f"{model_tok.vocab_size} but the dataset {dataset.folder} is encoded with a "
        f"{data_tok.kind} tokenizer with vocab_size {data_tok.vocab_size}; {fix}")


# ---------------------------------------------------------------------------- the dataset


def open_dataset(tcfg: TrainConfig, progress: bool = True) -> TokenDataset:
    """A prepared folder as given, or a named dataset prepared (once per tokenizer and
    options) under out/data/. A missing folder and an unknown name are different errors."""
    from ..data.datasets import DATASETS
    from ..data.prepare import prepare_dataset

    folder = Path(tcfg.dataset)
    if (folder / "meta.json").is_file():
        ds = TokenDataset(folder)
        ds.check()  # a truncated or edited folder: refused here, with the command that fixes it
        kind = ds.meta.get("tokenizer")
        if tcfg.tokenizer is not None and tcfg.tokenizer != kind:
            raise DataError(f"--tokenizer {tcfg.tokenizer}: {folder} is prepared with the "
                            f"{kind} tokenizer; drop --tokenizer, or pass a named dataset "
                            f"with --tokenizer {tcfg.tokenizer}")
        return ds
    if tcfg.dataset not in DATASETS:
        if folder.is_dir():
            raise DataError(f"dataset folder {folder} has no meta.json: it is not a prepared "
                            f"folder; make one with python -m numpy_gpt prepare --input FILE "
                            f"--out {folder}")
        if os.sep in tcfg.dataset or tcfg.dataset.startswith("."):
            raise DataError(f"dataset folder {folder} does not exist; prepare it with python "
                            f"-m numpy_gpt prepare, or give a named dataset "
                            f"({', '.join(DATASETS)})")
    return TokenDataset(prepare_dataset(tcfg.dataset, data_dir=tcfg.data_dir, progress=progress,
                                        tokenizer=tcfg.tokenizer))


# ---------------------------------------------------------------------------- memory


def train_bytes(tcfg: TrainConfig, vocab_size: int, itemsize: int = 4) -> int:
    """About the peak memory of a training step: parameters, gradients and the two AdamW
    moments, plus the activations kept for the backward pass: ~17 C-wide tensors per token and
    layer, each layer's (B, NH, T, T) attention probabilities, and the logits and their
    gradient. Within ~10 % of the NumPy twin's peak as tracemalloc measures it (baby config,
    T=512 and 6L/384d); meant to catch sizes that are off by orders of magnitude."""
    B, T, C, L = tcfg.batch_size, tcfg.block_size, tcfg.n_embd, tcfg.n_layer
    n_params = vocab_size * C + T * C + L * (12 * C * C + 13 * C) + 2 * C
    activations = B * L * (17 * T * C + tcfg.n_head * T * T) + 2 * B * T * vocab_size
    return (4 * n_params + activations) * itemsize


def physical_memory() -> int | None:
    """This machine's RAM in bytes, None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_targets_fit(dataset: TokenDataset, tcfg: TrainConfig) -> None:
    """DataError when no training example has a response token inside --block-size: with
    loss on the responses only, every batch would have nothing to learn (a NaN loss)."""
    if dataset.layout != "examples" or tcfg.loss_on != "response":
        return
    n, shortest = dataset.examples_with_targets("train", tcfg.block_size)
    if n == 0:
        raise DataError(
            f"--block-size {tcfg.block_size}: no training example of {dataset.folder} has a "
            f"response token within its first {tcfg.block_size + 1} tokens (the shortest "
            f"prompt is {shortest} tokens), so the loss on responses would have nothing to "
            f"learn; raise --block-size to at least {shortest}, or pass --loss-on all")


def check_memory(tcfg: TrainConfig, vocab_size: int, ram: int | None = None) -> None:
    """ValueError when a CPU training step of this size cannot fit in memory."""
    ram = physical_memory() if ram is None else ram
    itemsize = 8 if tcfg.dtype == "float64" else 4
    need = train_bytes(tcfg, vocab_size, itemsize)
    if ram is None or need <= ram:
        return
    raise ValueError(
        f"this run needs about {gib(need)} of memory per training step (--block-size "
        f"{tcfg.block_size}, --batch-size {tcfg.batch_size}, {tcfg.n_layer} layers of "
        f"{tcfg.n_embd} wide, {tcfg.dtype}; attention alone grows as batch x heads x T^2) but "
        f"this machine has {gib(ram)}; lower --block-size or --batch-size")


def gib(n: int | float) -> str:
    return f"{n / 2**40:,.1f} TiB" if n >= 2**40 else f"{n / 2**30:,.1f} GiB"
