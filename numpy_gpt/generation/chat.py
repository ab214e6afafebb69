"""A multi-turn chat with a checkpoint, for the terminal chatbot and the Streamlit page.

    session = ChatSession.load("numpy", "out/finetune-instruct-lora-numpy/merged")
    notices, chunks = session.send("what is a verb?")
    for text in chunks:                        # streamed as the tokens come
        print(text, end="", flush=True)        # the reply then joins session.history

The prompt is built by numpy_gpt.data.chat_format in the format the model was fine-tuned on:
"chat" is the conversation so far ending in "Assistant:"; "alpaca" is the instruction prompt
of the message alone (Alpaca is single-turn). Unless one is chosen, the format is the one
recorded by the LoRA adapter, else by the checkpoint (`chat_template`, written by finetune),
else "chat". An adapter is checked against the checkpoint first (numpy_gpt.nn.lora.
check_adapter_fits): on another base, or on a model it is already merged into, it is refused;
one too old to record its base and format is used with a notice saying what is assumed.
Words a word-level tokenizer does not know become its <UNK> token; the first time each
appears, a notice names it. Generation stops at the end-of-turn token. The model
sees at most block_size tokens and the reply needs room, so the prompt gets block_size minus
a reserve for the reply (min(max_new_tokens, block_size / 2)); when the conversation does not
fit, the oldest turns are left out of the prompt first (a user turn with its reply), and a
message too long on its own is cropped to its end. Each such step is reported as a notice.
Sampling is the twin's generate() (numpy_gpt/generation/generate.py, torch_gpt/generate.py)
through generation/sampler.py's Sampler; nothing here touches logits. Library code: it never prints.

Deliberately omits: system prompts from the command line, saving conversations, batching
several users (the Streamlit page keeps one session per browser tab).
Ref: OpenAI chat "messages" (role, content); HF transformers chat templates (the prompt ends
with the assistant's header, add_generation_prompt).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.chat_format import (
    EOT,
    TEMPLATES,
    Message,
    encode_alpaca_prompt,
    encode_prompt,
)
from ..nn.checkpoint import TEMPLATE_KEY, read_meta
from ..nn.lora import ADAPTER_CONFIG, BASE_KEY, check_adapter_fits, load_adapter
from ..training.finetune import ADAPTER_DIR, MERGED_DIR
from .sampler import Sampler
from .sampling import SamplingConfig, SamplingError, resolve_config, stream_text

if TYPE_CHECKING:  # a twin is handed in; numpy_gpt.twin is above this module
    from ..twin import Twin

# the chat's sampling defaults (sample's are nanoGPT's, for free-running text)
CHAT_DEFAULTS: dict[str, Any] = {"max_new_tokens": 200, "temperature": 0.8, "top_k": 50,
                                 "top_p": 0.95, "repetition_penalty": 1.0}
CHOSEN = "as chosen"  # ChatSession.template_source of a format given explicitly


def checkpoint_template(ckpt: str | Path) -> str:
    """The prompt format a checkpoint was fine-tuned on ("chat" when it does not say)."""
    template = read_meta(ckpt).get(TEMPLATE_KEY, "chat")
    return template if template in TEMPLATES else "chat"


@dataclasses.dataclass
class ChatModel:
    """A loaded checkpoint, with its LoRA adapter (checked and attached) when one is given."""

    sampler: Sampler
    ckpt: Path
    adapter: Path | None = None
    adapter_meta: dict[str, Any] | None = None  # the adapter's adapter_config.json

    def template(self, chosen: str | None = None) -> tuple[str, str]:
        """(prompt format, where it comes from): `chosen`, else the adapter's recorded one,
        else the checkpoint's, else "chat"."""
        if chosen is not None:
            return chosen, CHOSEN
        if self.adapter_meta is not None and self.adapter_meta.get(TEMPLATE_KEY) in TEMPLATES:
            return self.adapter_meta[TEMPLATE_KEY], "as recorded by the adapter"
        if read_meta(self.ckpt).get(TEMPLATE_KEY) in TEMPLATES:
            return checkpoint_template(self.ckpt), "as recorded by the checkpoint"
        return "chat", "by default"

    def notices(self, chosen: str | None = None) -> list[str]:
        """One line saying what is assumed of an adapter saved before adapters recorded their
        base and prompt format (nothing for a newer adapter: it was checked)."""
        meta = self.adapter_meta
        if meta is None or meta.get(BASE_KEY) is not None:
            return []
        template, source = self.template(chosen)
        fmt = ("" if chosen is not None or TEMPLATE_KEY in meta
               else f", in the {template} format ({source.removeprefix('as ')})")
        return [f"the adapter {self.adapter} does not record the base it was trained on "
                f"(saved before adapters recorded it): assuming it was trained on "
                f"{self.ckpt}{fmt}"]


def load_chat_model(twin: Twin, ckpt: str | Path, adapter: str | Path | None = None, *,
                    device: str | None = None, dtype: str | None = None) -> ChatModel:
    """Load `ckpt` in `twin` (numpy_gpt.twin.NUMPY, torch_gpt.twin.TORCH), with the LoRA
    `adapter` folder on top once it is checked to belong there (numpy_gpt.nn.lora.AdapterError
    otherwise). A LoRA run's best/ or last/ alone is refused: its weights are the frozen base,
    not the fine-tuned model."""
    ckpt = Path(ckpt)
    if adapter is None and (ckpt / ADAPTER_DIR / ADAPTER_CONFIG).is_file():
        raise ValueError(f"{ckpt} holds the frozen base weights of a LoRA run, not the "
                         f"fine-tuned model: chat with the run's {MERGED_DIR} folder, or put the "
                         f"adapter on it (adapter {ckpt / ADAPTER_DIR})")
    sampler = Sampler.load(twin, ckpt, device=device, dtype=dtype)
    if adapter is None:
        return ChatModel(sampler, ckpt)
    meta = attach_adapter(sampler, twin, adapter, ckpt)
    return ChatModel(sampler, ckpt, Path(adapter), meta)


class ChatSession:
    """A loaded model, its tokenizer, the sampling settings and the conversation so far."""

    def __init__(self, sampler: Sampler, config: SamplingConfig | None = None,
                 seed: int | None = None, template: str = "chat"):
        if template not in TEMPLATES:
            raise ValueError(f"unknown chat template {template!r}; choose one of {TEMPLATES}")
        self.sampler, self.template = sampler, template
        self.tokenizer = sampler.tokenizer
        if self.tokenizer.eot_id is None:
            raise ValueError(
                f"the checkpoint's {self.tokenizer.kind} tokenizer has no end-of-turn token, so "
                "the model was not trained on conversations and a reply would never end; "
                "continue text with it instead (sample --ckpt DIR --prompt TEXT), or train a "
                "chat model (train --preset dialogue-word, chat-bpe or instruct) and chat with "
                "its best/ folder")
        self.block_size: int = sampler.model.config.block_size
        self.config = resolve_config(config, {}) if config else SamplingConfig(**CHAT_DEFAULTS)
        _check_reply_length(self.config)
        self.rng = np.random.default_rng(seed)
        self.history: list[Message] = []
        self.context_start = 0  # history[context_start:] is what the prompt still shows
        self.template_source = CHOSEN  # where the format comes from (ChatModel.template)
        self.notices: list[str] = []  # what loading had to assume (ChatModel.notices)
        self.reported_unknown: set[str] = set()  # pieces already named in an <UNK> notice
        self.sent = ""  # the last message as sent (send), cropped when it did not fit

    @classmethod
    def load(cls, twin: Twin, ckpt: str | Path, *, adapter: str | Path | None = None,
             device: str | None = None, dtype: str | None = None,
             config: SamplingConfig | None = None, seed: int | None = None,
             template: str | None = None) -> ChatSession:
        """Load `ckpt` in `twin`, with a LoRA `adapter` folder on top
        (load_chat_model); `template` defaults to the recorded one (ChatModel.template)."""
        model = load_chat_model(twin, ckpt, adapter, device=device, dtype=dtype)
        return cls.start(model, template, config, seed)

    @classmethod
    def start(cls, model: ChatModel, template: str | None = None,
              config: SamplingConfig | None = None, seed: int | None = None) -> ChatSession:
        """A new conversation with a loaded ChatModel, in `template` or the recorded format."""
        fmt, source = model.template(template)
        session = cls(model.sampler, config, seed, fmt)
        session.template_source, session.notices = source, model.notices(template)
        return session

    # ------------------------------------------------------------------ settings

    def update(self, **settings: Any) -> SamplingConfig:
        """Change sampling settings (SamplingConfig fields); a bad value raises SamplingError
        and leaves the settings as they were."""
        config = resolve_config(self.config, settings)
        _check_reply_length(config)
        self.config = config
        return self.config

    def reset(self) -> None:
        """Forget the conversation (the settings stay)."""
        self.history, self.context_start = [], 0

    @property
    def reserve(self) -> int:
        """Context positions kept free for the reply."""
        return max(1, min(self.config.max_new_tokens, self.block_size // 2))

    # ------------------------------------------------------------------ a turn

    def send(self, message: str) -> tuple[list[str], Iterator[str]]:
        """Add a user message; returns (notices about cropping, the reply's text chunks).

        The reply streams lazily; when the stream ends (or is closed early) the user turn and
        the reply so far join the history. An empty message raises ValueError.
        """
        if not message.strip():
            raise ValueError("empty message: type something to say")
        ids, message, notices = self.fit_prompt(message.strip())
        self.sent = message  # as the model gets it (cropped to the context if too long)
        unknown = [p for p in self.tokenizer.unknown_pieces(message)
                   if p not in self.reported_unknown]
        if unknown:
            self.reported_unknown.update(unknown)
            notices.append(f"not in the model's vocabulary, so read as "
                           f"{self.tokenizer.unk_token}: {', '.join(map(repr, unknown))}")
        return notices, self._reply(ids, message)

    def fit_prompt(self, message: str) -> tuple[list[int], str, list[str]]:
        """(prompt ids, the message as sent, notices): the history cropped to the window."""
        budget = self.block_size - self.reserve
        start = self.context_start
        ids = self._prompt(self.history[start:], message)
        while len(ids) > budget and start < len(self.history) and self.template == "chat":
            start += 1  # drop the oldest message, then its reply, so a user turn comes first
            while start < len(self.history) and self.history[start]["role"] == "assistant":
                start += 1
            ids = self._prompt(self.history[start:], message)
        notices = []
        if start > self.context_start:
            notices.append(f"the conversation is longer than the model's context "
                           f"({self.block_size} tokens): left out its {start} oldest message(s)")
            self.context_start = start
        if len(ids) > budget:
            message = self._crop(message, budget)
            ids = self._prompt([], message)
            notices.append(f"your message is longer than the model's context: kept its last "
                           f"{len(message)} characters")
        return ids, message, notices

    def _crop(self, message: str, budget: int) -> str:
        """The longest suffix of `message` whose prompt fits `budget` (binary search)."""
        lo, hi = 1, len(message)  # 1 char must fit: block_size leaves room for the template
        while lo < hi:
            mid = (lo + hi + 1) // 2
            fits = len(self._prompt([], message[-mid:])) <= budget
            lo, hi = (mid, hi) if fits else (lo, mid - 1)
        return message[-lo:]

    def _prompt(self, history: list[Message], message: str) -> list[int]:
        if self.template == "alpaca":  # single-turn: the instruction alone
            return encode_alpaca_prompt(self.tokenizer, message)
        return encode_prompt(self.tokenizer, [*history, {"role": "user", "content": message}])

    def _reply(self, ids: list[int], message: str) -> Iterator[str]:
        s = self.sampler
        eot = self.tokenizer.eot_token or EOT
        config = dataclasses.replace(self.config, stop_ids=(self.tokenizer.eot_id,),
                                     stop_strings=(eot,), vocab_limit=s.vocab_limit)
        tokens = s.generate(s.model, ids, config, rng=self.rng, **s.generate_kwargs)
        parts: list[str] = []
        try:
            for text in stream_text(tokens, self.tokenizer, config.stop_strings):
                if not parts:  # the template puts a space after "Assistant:"; not shown
                    text = text.lstrip()
                    if not text:
                        continue
                parts.append(text)
                yield text
        finally:
            self.history += [{"role": "user", "content": message},
                             {"role": "assistant", "content": "".join(parts).strip()}]


def attach_adapter(sampler: Sampler, twin: Twin, adapter: str | Path, ckpt: str | Path
                   ) -> dict[str, Any]:
    """Put a LoRA adapter folder (numpy_gpt.nn.lora.save_adapter's files) on the model loaded
    from `ckpt`, after check_adapter_fits (twin.attach_lora); returns its adapter_config.json."""
    lcfg, tensors, meta = load_adapter(adapter)
    check_adapter_fits(adapter, lcfg, tensors, meta, ckpt)
    twin.attach_lora(sampler.model, lcfg, tensors)
    return meta


def _check_reply_length(config: SamplingConfig) -> None:
    if config.max_new_tokens < 1:  # 0 would end every turn before it starts
        raise SamplingError(f"a chat reply needs max_new_tokens >= 1, got "
                            f"{config.max_new_tokens}")
