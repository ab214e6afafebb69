"""Fine-tuning a checkpoint on instructions or dialogue: full, or LoRA, on the one training loop.

    tok = checkpoint_tokenizer(ckpt)
    dataset = open_finetune_dataset("instruct", tok)   # with the checkpoint's tokenizer
    tcfg = finetune_config(ckpt, dataset.folder, {"max_iters": 200}, lora=True)
    result = finetune(tcfg, dataset, Path("out/ft"), NUMPY, LoRAConfig(rank=8))  # numpy_gpt.twin

What it adds to numpy_gpt.training.train (it does not loop itself):
  * data: a named dataset is prepared with the *checkpoint's* tokenizer
    (out/data/<name>-<kind>-<fingerprint>), so the ids mean what the model learned; a prepared
    folder must hold that same tokenizer. Examples are padded batches with the loss on responses
    only by default (chat_format, numpy_gpt.data.dataset.collate_examples): the format trained
    on is the chat prompt.
  * settings: the model's shape comes from the checkpoint; smaller learning rates, frequent
    evaluations and early stopping on the validation loss (patience) by default.
  * LoRA: a backend that trains only the adapters (LoRANumpyBackend here, its torch twin in
    torch_gpt/finetune.py; the twin hands its own in, numpy_gpt.twin), plugged into
    numpy_gpt.training.train.train like any backend.

Output folder of a LoRA run: last/ and best/ hold the frozen base weights plus `adapter/` (the
adapter alone, and with last/'s optimizer and trainer state a run resumes exactly); at the end
OUT/adapter is best's adapter and OUT/merged the best model with the adapter folded in
(W += alpha/r B A), an ordinary checkpoint that sample and chat load in either twin.
A full fine-tune writes the usual last/ and best/. What was trained on is recorded where chat
looks for it: the prompt format ("chat_template": "alpaca" for instructions, "chat" for
dialogue) in config.json of the fine-tuned models (best of a full run, merged of a LoRA run)
and in every adapter_config.json, together with the fingerprint of the base weights; merged/
lists the fingerprint of the adapter merged into it (numpy_gpt.nn.lora.MERGED_KEY), so the
adapter is refused on it. A LoRA run's best/ and last/ hold the *base* weights (plus
adapter/), so they record no format of their own.

Deliberately omits: QLoRA, several adapters, packing examples, reward/preference tuning.
Ref: Hu et al. 2021 (LoRA); rasbt/LLMs-from-scratch ch07 (instruction fine-tuning, masked
loss); nanoGPT config/finetune_shakespeare.py (init_from, small lr, frequent evals).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.dataset import DataError, TokenDataset
from ..files.safe_io import staged_dir, write_text_atomic
from ..nn import checkpoint as ckpt
from ..nn.checkpoint import TEMPLATE_KEY
from ..nn.config import GPTConfig
from ..nn.lora import MERGED_KEY, LoRAConfig, adapter_fingerprint, load_adapter, save_adapter
from ..nn.model import GPT
from ..nn.optim import AdamW
from .config import TrainConfig
from .numpy_backend import NumpyBackend, numpy_model
from .train import BackendFactory, Reporter, TrainResult, train

if TYPE_CHECKING:  # a twin is handed in; numpy_gpt.twin is above this module
    from ..twin import Twin

ADAPTER_DIR = "adapter"  # in last/, best/ and OUT: the adapter alone
MERGED_DIR = "merged"  # in OUT: the best model with the adapter merged in
TEMPLATE_OF_FORMAT = {"alpaca": "alpaca", "csv": "chat", "jsonl": "chat"}  # prepare formats
DATA_ROOT = Path("out") / "data"

# Defaults of a fine-tune (flags override them); the model's shape comes from the checkpoint.
FINETUNE_DEFAULTS: dict[str, Any] = {
    "max_iters": 300, "eval_interval": 25, "eval_iters": 10, "patience": 4,
    "warmup_iters": 10, "batch_size": 8, "dropout": 0.0, "loss_on": "response",
    "grad_clip": 1.0, "sample_tokens": 0, "learning_rate": 3e-4,
}
LORA_DEFAULTS: dict[str, Any] = {"learning_rate": 1e-3, "weight_decay": 0.0}
MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "bias", "tie_weights", "gelu")


# ---------------------------------------------------------------------------- settings


def finetune_config(ckpt_dir: str | Path, dataset: str | Path, overrides: dict[str, Any],
                    lora: bool) -> TrainConfig:
    """The TrainConfig of a fine-tune of `ckpt_dir` on `dataset` (a prepared folder).

    Defaults <- LoRA defaults (with `lora`) <- the checkpoint's shape <- `overrides` (None =
    not given). min_lr defaults to a tenth of the learning rate; block_size to the model's.
    """
    stored = GPTConfig.from_dict(ckpt.read_meta(ckpt_dir)["model"])
    settings = dict(FINETUNE_DEFAULTS, **(LORA_DEFAULTS if lora else {}))
    settings.update({f: getattr(stored, f) for f in MODEL_FIELDS})
    settings.update(block_size=stored.block_size, dataset=str(dataset), init_from=str(ckpt_dir))
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("min_lr") is None:
        settings["min_lr"] = settings["learning_rate"] / 10
    for f in MODEL_FIELDS:
        if settings[f] != getattr(stored, f):
            raise ValueError(f"--{f.replace('_', '-')} cannot change in a fine-tune: the "
                             f"checkpoint has {f}={getattr(stored, f)!r}")
    if settings["block_size"] > stored.block_size:
        raise ValueError(f"--block-size {settings['block_size']} exceeds the checkpoint's "
                         f"block_size {stored.block_size}")
    return TrainConfig.from_dict(settings)


# ---------------------------------------------------------------------------- data


def open_finetune_dataset(dataset: str | Path, tokenizer: Any, *,
                          data_dir: str | Path | None = None, progress: bool = False
                          ) -> TokenDataset:
    """A prepared folder whose tokenizer must equal `tokenizer`, or a named dataset prepared
    (once, then reused) with `tokenizer` under out/data/<name>-<kind>-<fingerprint>."""
    folder = Path(dataset)
    if (folder / "meta.json").is_file():
        ds = TokenDataset(folder)
        check_same_tokenizer(ds.tokenizer(), tokenizer, folder)
        return ds
    from ..data.datasets import DATASETS, dataset_file, get_spec
    from ..data.prepare import prepare, tokenizer_fingerprint
    from ..tokenizers import TokenizerError

    if str(dataset) not in DATASETS:
        raise DataError(f"--dataset {dataset}: neither a prepared folder (no meta.json there) "
                        f"nor a named dataset ({', '.join(DATASETS)})")
    spec = get_spec(str(dataset))
    fingerprint = tokenizer_fingerprint(tokenizer)[:10]
    out = DATA_ROOT / f"{spec.name}-{tokenizer.kind}-{fingerprint}"
    try:
        folder = prepare(dataset_file(spec.name, data_dir), out, fmt=spec.format,
                         tokenizer=tokenizer, data_dir=data_dir, name=spec.name,
                         progress=progress, reuse=True)
    except TokenizerError as e:
        raise DataError(f"the checkpoint's {tokenizer.kind} tokenizer cannot encode the "
                        f"{spec.name} data ({e}); fine-tune a checkpoint whose tokenizer "
                        "covers it (gpt2 or bpe are byte-level and cover any text)") from None
    return TokenDataset(folder)


def check_same_tokenizer(data_tok: Any, model_tok: Any, where: Path) -> None:
    """DataError unless the dataset was encoded with exactly the model's tokenizer."""
    if data_tok.to_dict() != model_tok.to_dict():
        raise DataError(
            f"{where} was prepared with a different tokenizer ({data_tok.kind}, "
            f"{data_tok.vocab_size} tokens) than the checkpoint's ({model_tok.kind}, "
            f"{model_tok.vocab_size} tokens); pass a named dataset (it is prepared with the "
            "checkpoint's tokenizer) or prepare the folder with that tokenizer")


# ---------------------------------------------------------------------------- LoRA backend


class LoRANumpyBackend(NumpyBackend):
    """NumpyBackend whose AdamW sees only the adapters (lora_A / lora_B): the base stays
    frozen. Checkpoints hold the base weights, the adapter in `adapter/` and the adapters'
    optimizer moments; the adapter records the base's fingerprint and `template`, the prompt
    format of the training data."""

    def __init__(self, model: GPT, tcfg: TrainConfig, template: str | None = None):
        if model.lora is None:
            raise ValueError("LoRANumpyBackend needs a model with LoRA adapters (add_lora)")
        super().__init__(model, tcfg)
        self.template = template
        self.base_fingerprint = ckpt.params_fingerprint(model.params)  # frozen: hashed once
        self.opt = AdamW(model.lora_params, lr=tcfg.learning_rate,  # the adapters only
                         betas=(tcfg.beta1, tcfg.beta2), weight_decay=tcfg.weight_decay)

    def step(self, lr: float, grad_clip: float) -> float:
        assert self.grads is not None, "step() before forward_backward()"
        # backward returns every gradient; the frozen ones are dropped before clipping
        self.grads = {k: self.grads[k] for k in self.model.lora_params}
        return super().step(lr, grad_clip)

    def write_extra(self, folder: Path) -> None:
        # the checkpoint holds the base params (+ the adapters' AdamW); the adapter goes in
        # the same temporary folder, so last/ never pairs one step's state with another's
        save_adapter(folder / ADAPTER_DIR, self.model.lora, self.model.lora_params,
                     base=self.tcfg.init_from, base_fingerprint=self.base_fingerprint,
                     template=self.template)


def lora_numpy_backend(lcfg: LoRAConfig, resume_dir: Path, template: str | None = None
                       ) -> BackendFactory:
    """A factory for numpy_gpt.training.train.train: the base from the checkpoint it is given, fresh
    adapters (seeded), or the saved ones when that checkpoint is the run's own `resume_dir`.
    `template`: the prompt format of the data, recorded in the adapter."""

    def make(tcfg: TrainConfig, config: GPTConfig, init: Path | None) -> LoRANumpyBackend:
        if init is None:
            raise ValueError("LoRA fine-tuning needs a checkpoint to start from (--ckpt)")
        model = numpy_model(tcfg, config, init)
        if Path(init) == resume_dir and (Path(init) / ADAPTER_DIR).is_dir():
            saved, tensors, _ = load_adapter(Path(init) / ADAPTER_DIR)
            model.set_lora(saved, tensors)
        else:
            model.add_lora(lcfg, seed=tcfg.seed)
        return LoRANumpyBackend(model, tcfg, template)

    return make


def export_merged_numpy(best: Path, out: Path) -> Path:
    """best/ (base + adapter/) -> `out`, a plain checkpoint with the adapter merged in."""
    model = GPT.load(best)
    lcfg, tensors, _ = load_adapter(best / ADAPTER_DIR)
    model.set_lora(lcfg, tensors)
    model.merge_lora()
    model.save(out, tokenizer=tokenizer_of(best))
    return out


def tokenizer_of(folder: Path) -> Any:
    """The tokenizer saved in a checkpoint folder, or None when it has none."""
    from ..tokenizers import load_tokenizer

    file = folder / ckpt.TOKENIZER_FILE
    return load_tokenizer(file) if file.is_file() else None


# ---------------------------------------------------------------------------- the run


@dataclass
class FinetuneResult:
    train: TrainResult
    model_dir: Path | None  # what to sample/chat with: OUT/merged (LoRA) or OUT/best (full)
    adapter_dir: Path | None  # OUT/adapter for LoRA runs
    val_loss_before: float | None  # the first evaluation, before any step
    val_loss_best: float


def finetune(
    tcfg: TrainConfig,
    dataset: TokenDataset,
    out_dir: Path,
    twin: Twin,
    lora: LoRAConfig | None = None,
    *,
    resume: bool = False,
    reporter: Reporter | None = None,
    should_stop: Any = lambda: False,
) -> FinetuneResult:
    """Fine-tune per `tcfg` (from finetune_config) in `twin` (numpy_gpt.twin.NUMPY, ...); with
    `lora` only the adapters train. Exports OUT/adapter and OUT/merged for LoRA runs."""
    template = TEMPLATE_OF_FORMAT.get(dataset.meta.get("source", {}).get("format"))
    make = (twin.lora_backend(lora, out_dir / "last", template) if lora is not None
            else twin.train_backend)
    result = train(tcfg, dataset, out_dir, make, resume=resume, reporter=reporter,
                   should_stop=should_stop)
    best = out_dir / "best"
    model_dir = best if best.is_dir() else None
    adapter_dir = None
    if lora is not None and best.is_dir() and result.status != "interrupted":
        adapter_dir = out_dir / ADAPTER_DIR
        with staged_dir(adapter_dir) as tmp:  # a full disk leaves the old OUT/adapter whole
            shutil.copytree(best / ADAPTER_DIR, tmp, dirs_exist_ok=True)
        model_dir = twin.export_merged(best, out_dir / MERGED_DIR)
        record_meta(model_dir, {MERGED_KEY: merged_adapters(tcfg.init_from, adapter_dir)})
    if template and model_dir is not None and (lora is None or adapter_dir is not None):
        record_meta(model_dir, {TEMPLATE_KEY: template})
    before = result.log[0]["val_loss"] if result.log else None
    return FinetuneResult(result, model_dir, adapter_dir, before, result.best_val_loss)


def merged_adapters(base: str | None, adapter_dir: Path) -> list[str]:
    """The fingerprints of the adapters merged into base + the one in adapter_dir: the base's
    own list (when its folder is still there to say), then this adapter's."""
    try:
        before = list(ckpt.read_meta(base).get(MERGED_KEY) or []) if base else []
    except ckpt.CheckpointError:
        before = []
    lcfg, tensors, _ = load_adapter(adapter_dir)
    return [*before, adapter_fingerprint(lcfg, tensors)]


def record_meta(folder: Path, fields: dict[str, Any]) -> None:
    """Add `fields` to a checkpoint's config.json (atomically): the prompt format it was
    fine-tuned on (numpy_gpt.generation.chat reads it), the adapters merged into it."""
    meta = ckpt.read_meta(folder)
    meta.update(fields)
    write_text_atomic(folder / ckpt.CONFIG_FILE, json.dumps(meta, indent=2) + "\n")


def stored_lora(out_dir: Path) -> LoRAConfig | None:
    """The LoRA config of the run in out_dir (from last/adapter), None for a full fine-tune."""
    adapter = out_dir / "last" / ADAPTER_DIR
    return load_adapter(adapter)[0] if adapter.is_dir() else None
