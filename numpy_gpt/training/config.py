"""TrainConfig and the named presets, shared by both twins' `train` command.

A run's settings are layered: the dataclass defaults, then a preset (`--preset NAME`), then a
JSON file (`--config FILE`), then individual flags. The resolved TrainConfig is stored in
every checkpoint's trainer_state.json, so `--resume` continues with exactly those settings.

Presets follow nanoGPT where it has one (config/train_shakespeare_char.py and its README's
CPU command) so results can be compared with it, and reproduce the small GPT projects this one
grew from (README "The projects this grew from, reproduced"): dialogue-word, chat-bpe,
tinystories-gpt2, shakespeare-char, instruct.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..nn.config import ARCHITECTURES, ConfigError, GPTConfig, arch_fields, unknown_fields


@dataclass(frozen=True)
class TrainConfig:
    # data
    dataset: str = "shakespeare_char"  # a named dataset (numpy_gpt.data.datasets) or a
                                       # prepared folder
    data_dir: str | None = None  # the folder of the raw files (else $GPT_DATA_DIR, ./data, ...)
    tokenizer: str | None = None  # a named dataset's tokenizer kind; None = the dataset's own
    loss_on: str = "response"  # examples datasets: train on "response" tokens or "all"
    # model (GPTConfig fields; vocab_size comes from the tokenizer)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool | None = None  # None: the arch's (gpt2 True, llama False)
    tie_weights: bool | None = None  # None: the arch's (gpt2 True, llama False)
    pad_vocab_to: int = 1  # the model's vocabulary rounded up to a multiple (GPT-2, 64: 50304)
    gelu: str = "tanh"
    # the architecture (numpy_gpt.nn.config.arch_fields): `arch` names the usual combination
    # and each field below left None takes the arch's value; one given overrides it (GPT-2
    # with RoPE is --position rope). Runs stored before these existed are gpt2.
    arch: str = "gpt2"
    norm: str | None = None  # layernorm | rmsnorm
    position: str | None = None  # learned | rope
    rope_theta: float | None = None
    rope_layout: str | None = None  # halves | interleaved
    mlp: str | None = None  # gelu | swiglu
    ffn_hidden: int | None = None  # None: the rule of GPTConfig.ffn_width
    n_kv_head: int | None = None  # None: the arch's (gpt2 n_head, llama n_head / 2 if even)
    init_from: str | None = None  # a checkpoint folder to start from instead of scratch
    # optimization
    batch_size: int = 12
    gradient_accumulation_steps: int = 1
    max_iters: int = 2000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # cosine: None = max_iters
    lr_schedule: str = "cosine"  # cosine | cosine-restarts (numpy_gpt.nn.optim)
    lr_restart_period: int | None = None  # cosine-restarts: steps of the first cycle (T_0)
    lr_restart_mult: int | None = None  # cosine-restarts: growth of each next cycle; None = 1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables clipping
    label_smoothing: float = 0.0
    # evaluation, checkpoints, stopping
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    patience: int = 0  # early stopping: evaluations without val improvement; 0 = never
    sample_tokens: int = 300  # tokens printed from the final model; 0 = none
    out: str | None = None  # None: out/<preset or dataset>-<backend>
    name: str | None = None  # what headers and plots call the run: its --preset or --config
                             # file's name (None: the output folder's name); kept on --resume
    seed: int = 1337
    # backend
    dtype: str = "float32"  # numpy: float32|float64; torch: also bfloat16|float16 (autocast)
    device: str = "auto"  # torch: auto|cpu|cuda|mps; numpy: auto (= cpu)|cpu|cuda (CuPy)
    compile: bool = False  # torch only
    dropout_masks: str = "own"  # torch only: own (torch's generator) | numpy (numpy_gpt's masks)
    threads: int | None = None  # CPU threads (numpy: batch shards; torch: intra-op); None = all

    def __post_init__(self) -> None:
        positive = ("n_layer", "n_head", "n_embd", "block_size", "batch_size",
                    "gradient_accumulation_steps", "eval_interval", "eval_iters", "log_interval",
                    "pad_vocab_to")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{_flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("max_iters", "warmup_iters", "patience", "sample_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{_flag(name)} must be >= 0, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.min_lr <= self.learning_rate:
            raise ValueError(f"--min-lr must be in [0, learning_rate], got {self.min_lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.grad_clip < 0:
            raise ValueError(f"--grad-clip must be >= 0 (0 = off), got {self.grad_clip}")
        self._check_schedule()
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.dropout_masks not in ("own", "numpy"):
            raise ValueError(f"--dropout-masks must be 'own' or 'numpy', got "
                             f"{self.dropout_masks!r}")
        if self.loss_on not in ("response", "all"):
            raise ValueError(f"--loss-on must be 'response' or 'all', got {self.loss_on!r}")
        self._check_architecture()
        if self.tokenizer is not None:
            from ..tokenizers import TOKENIZERS

            if self.tokenizer not in TOKENIZERS:
                raise ValueError(f"--tokenizer must be one of {', '.join(TOKENIZERS)}, "
                                 f"got {self.tokenizer!r}")

    def _check_architecture(self) -> None:
        """--arch and the architecture flags make a possible model, or the error names the
        flag (GPTConfig's check, in the command line's words)."""
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"--arch must be one of {', '.join(ARCHITECTURES)}, got "
                             f"{self.arch!r}")
        try:
            self.model_config(vocab_size=1)
        except ConfigError as e:
            message = str(e)
            for name in (*ARCH_SETTINGS, "n_layer", "n_head", "n_embd", "block_size",
                         "dropout"):
                message = message.replace(f"GPTConfig.{name}", f"--{_flag(name)}")
            raise ValueError(message) from None

    def _check_schedule(self) -> None:
        """Each schedule takes only its own settings: one that would be ignored is an error."""
        from ..nn.optim import LR_SCHEDULES

        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got "
                             f"{self.lr_schedule!r}")
        restarts = {"lr_restart_period": self.lr_restart_period,
                    "lr_restart_mult": self.lr_restart_mult}
        if self.lr_schedule == "cosine":
            given = [f"--{_flag(k)}" for k, v in restarts.items() if v is not None]
            if given:
                raise ValueError(f"{', '.join(given)} applies to --lr-schedule cosine-restarts "
                                 "only; add --lr-schedule cosine-restarts or drop it")
            return
        if self.lr_restart_period is None:
            raise ValueError("--lr-schedule cosine-restarts needs --lr-restart-period N (the "
                             "first cycle's steps; --lr-restart-mult M makes each next one M "
                             "times longer)")
        for name, value in restarts.items():
            if value is not None and value < 1:
                raise ValueError(f"--{_flag(name)} must be >= 1, got {value}")
        if self.lr_decay_iters is not None:
            raise ValueError("--lr-decay-iters applies to --lr-schedule cosine only (with "
                             "cosine-restarts the cycles are set by --lr-restart-period and "
                             "--lr-restart-mult); drop it")

    @property
    def decay_iters(self) -> int:
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters

    def model_vocab_size(self, vocab_size: int) -> int:
        """The tokenizer's vocab_size rounded up to a multiple of pad_vocab_to (the padding
        rows are never sampled: sampling.SamplingConfig.vocab_limit)."""
        return -(-vocab_size // self.pad_vocab_to) * self.pad_vocab_to

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The model for a tokenizer of vocab_size tokens (padded per pad_vocab_to)."""
        vocab_size = self.model_vocab_size(vocab_size)
        arch = arch_fields(self.arch, self.n_head)  # the arch's values, then the given ones
        arch.update({k: getattr(self, k) for k in ARCH_SETTINGS if getattr(self, k) is not None})
        return GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout,
                         gelu=self.gelu, **arch)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        unknown, valid = unknown_fields(cls, d)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; valid: {', '.join(valid)}")
        return cls(**d)


# the TrainConfig fields that, left None, take --arch's value (arch_fields)
ARCH_SETTINGS = ("bias", "tie_weights", "norm", "position", "rope_theta", "rope_layout", "mlp",
                 "ffn_hidden", "n_kv_head")

# nanoGPT config/train_shakespeare_char.py, with its README's CPU overrides
_SHAKESPEARE_CHAR = {
    "dataset": "shakespeare_char", "learning_rate": 1e-3, "min_lr": 1e-4, "beta2": 0.99,
    "warmup_iters": 100, "weight_decay": 0.1, "grad_clip": 1.0, "bias": False,
}  # GELU: GPT-2's tanh form (nanoGPT uses the erf form; the loss curves are indistinguishable)

_DIALOGUE = {
    "dataset": "dialogue", "n_layer": 4, "n_head": 4, "n_embd": 192, "block_size": 128,
    "batch_size": 16, "max_iters": 1500, "learning_rate": 1e-3, "min_lr": 1e-4,
    "warmup_iters": 50, "dropout": 0.1, "weight_decay": 0.1, "eval_interval": 100,
    "eval_iters": 10, "patience": 5, "loss_on": "response",
}

PRESETS: dict[str, dict[str, Any]] = {
    # python train.py config/train_shakespeare_char.py --device=cpu --compile=False
    #   --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
    #   --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0
    # (lr_decay_iters is left out of every preset: the cosine ends at max_iters unless
    # --lr-decay-iters says otherwise, one rule whatever --max-iters is given)
    "shakespeare-char-cpu": {
        **_SHAKESPEARE_CHAR, "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64,
        "batch_size": 12, "max_iters": 2000, "dropout": 0.0,
        "eval_interval": 250, "eval_iters": 20,
    },
    # the full nanoGPT shakespeare_char run (a GPU-sized job: ~10M parameters)
    "shakespeare-char": {
        **_SHAKESPEARE_CHAR, "n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256,
        "batch_size": 64, "max_iters": 5000, "dropout": 0.2,
        "eval_interval": 250, "eval_iters": 200,
    },
    # TinyStories on GPT-2's BPE (vocabulary padded to 50304, as nanoGPT), with AdamW beta2 0.95,
    # weight decay 0.1, label smoothing, gradient accumulation and a cosine schedule with warm
    # restarts from 1e-4 to 1e-5: two cycles, 3,300 then 6,600 steps, ending on the floor at
    # iteration 10,000. The torch twin adds bf16 autocast with --dtype bfloat16 on a GPU (the
    # preset stays float32: the NumPy twin has no bf16, and on a CPU autocast is slower).
    "tinystories-gpt2": {
        "dataset": "tinystories", "tokenizer": "gpt2", "pad_vocab_to": 64,
        "n_layer": 4, "n_head": 4, "n_embd": 256, "block_size": 128, "dropout": 0.1,
        "bias": True, "batch_size": 8, "gradient_accumulation_steps": 4, "max_iters": 10000,
        "learning_rate": 1e-4, "min_lr": 1e-5, "warmup_iters": 100, "beta2": 0.95,
        "weight_decay": 0.1, "label_smoothing": 0.1, "lr_schedule": "cosine-restarts",
        "lr_restart_period": 3300, "lr_restart_mult": 2, "eval_interval": 500, "eval_iters": 20,
    },
    # LLMs-from-scratch ch07-style instruction tuning on GPT-2 BPE: response-only loss, early
    # stopping, perplexity in the log; then `finetune --lora` and `chat`
    "instruct": {
        "dataset": "instruct", "n_layer": 4, "n_head": 4, "n_embd": 256, "block_size": 256,
        "batch_size": 8, "max_iters": 1000, "learning_rate": 5e-4, "min_lr": 5e-5,
        "warmup_iters": 50, "dropout": 0.1, "eval_interval": 100, "eval_iters": 10,
        "patience": 5, "loss_on": "response",
    },
    # the dialogue CSV on GPT-2 BPE (the dataset's own tokenizer)
    "dialogue": _DIALOGUE,
    # the word-level dialogue bot: words + <PAD> <UNK> <END>, dropout and weight decay; sample
    # with a temperature, stopping at <END>, and chat in the terminal or the Streamlit page
    "dialogue-word": {**_DIALOGUE, "tokenizer": "word"},
    # the byte-level BPE chatbot: a BPE (512 tokens) trained on the dialogue CSV itself,
    # 4L/4H/256d with tied embeddings, micro-batches of 2 accumulated 8 times; top-k chat
    "chat-bpe": {
        "dataset": "dialogue", "tokenizer": "bpe", "n_layer": 4, "n_head": 4, "n_embd": 256,
        "block_size": 128, "tie_weights": True, "dropout": 0.1, "batch_size": 2,
        "gradient_accumulation_steps": 8, "max_iters": 2000, "learning_rate": 5e-4,
        "min_lr": 5e-5, "warmup_iters": 100, "eval_interval": 100, "eval_iters": 20,
        "patience": 5, "loss_on": "response",
    },
}
DEFAULT_PRESET = "shakespeare-char-cpu"
# the settings that belong to one learning-rate schedule only (see TrainConfig._check_schedule)
SCHEDULE_SETTINGS = ("lr_decay_iters", "lr_restart_period", "lr_restart_mult")


def resolve(preset: str | None, config_file: str | None, overrides: dict[str, Any]
            ) -> TrainConfig:
    """Defaults <- preset <- JSON file <- flags (None values in overrides are 'not given').

    A preset's schedule goes whole: when the file or the flags choose another lr_schedule,
    the preset's settings of its own schedule (e.g. lr_decay_iters) are not inherited, since
    they would not apply (only what the file and flags give for the new one counts).
    """
    settings: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
        settings.update(PRESETS[preset])
    later = read_settings_file(config_file) if config_file is not None else {}
    later.update({k: v for k, v in overrides.items() if v is not None})
    if later.get("lr_schedule", settings.get("lr_schedule")) != settings.get("lr_schedule"):
        for key in SCHEDULE_SETTINGS:
            settings.pop(key, None)
    settings.update(later)
    return TrainConfig.from_dict(settings)


def read_settings_file(config_file: str) -> dict[str, Any]:
    """The settings of a --config JSON file (keys in snake_case)."""
    path = Path(config_file)
    if not path.is_file():
        raise FileNotFoundError(f"--config file {path} does not exist")
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"--config {path} is not valid JSON: {e}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"--config {path} must hold a JSON object of settings")
    return {k.replace("-", "_"): v for k, v in loaded.items()}


def _flag(name: str) -> str:
    return name.replace("_", "-")
