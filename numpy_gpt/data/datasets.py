"""Raw data: named datasets, where their files are found, how each format is read.

| name | raw file (under a data dir) | format | tokenizer |
|---|---|---|---|
| shakespeare_char | tinyshakespeare/input.txt | text, split by position 90/10 | char (65) |
| shakespeare | tinyshakespeare/input.txt | text, split by position 90/10 | gpt2 |
| tinystories | tinystories/tinystories_10k.txt | text, documents split on <|endoftext|> | gpt2 |
| instruct | instruct/instruction-data.json | alpaca | gpt2 |
| dialogue | dialogue/Conversation.csv | csv (question, answer; rows chain) | gpt2 |

An explicit data_dir (`--data-dir`) is authoritative: it must exist, and only it is searched.
Without one, raw files are looked up, first hit wins, in `$GPT_DATA_DIR`, ./data,
../shared/data (both relative to the current directory), then <repo>/data and
<repo>/../shared/data, <repo> being the folder that holds the numpy_gpt package. Tiny
Shakespeare is downloaded (short timeout, sha256 checked) into
<data_dir or ./data>/tinyshakespeare/input.txt when it is not found and the network answers;
otherwise the one-line error says where to put it. GPT-2's encoder.json and vocab.bpe are found
the same way, under gpt2/.

Prepared folders are keyed by what produced them: out/data/<name>-<tokenizer>[-<options>]
(numpy_gpt.data.prepare.prepared_folder), so preparing a dataset with one tokenizer never
overwrites another.

Reading: `read_text_file` (UTF-8 or a one-line error with the byte offset), and parsers for
the dialogue CSV, Alpaca JSON and JSONL conversations, which return messages / fields that
chat_format turns into training examples. numpy_gpt.data.prepare.prepare_dataset(name)
tokenizes a named dataset.

Deliberately omits: downloading anything but Tiny Shakespeare (the other files are not at a
stable public URL with a known hash here), dataset versions, streaming huge corpora.
Ref: karpathy/nanoGPT data/*/prepare.py (names, 90/10 split); DESIGN.md "Data".
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files.safe_io import write_bytes_atomic
from ..tokenizers import GPT2Tokenizer
from . import chat_format
from .dataset import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_DATA_DIR = "GPT_DATA_DIR"
DOWNLOAD_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    path: str  # raw file, relative to a data dir
    format: str  # prepare's input format: text | csv | alpaca | jsonl
    tokenizer: str  # default tokenizer kind
    description: str
    url: str | None = None  # public download URL, if any
    sha256: str | None = None  # expected hash of the downloaded file


TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec(
            "shakespeare_char", "tinyshakespeare/input.txt", "text", "char",
            "Tiny Shakespeare, one token per character (nanoGPT shakespeare_char)",
            TINY_SHAKESPEARE_URL, TINY_SHAKESPEARE_SHA256,
        ),
        DatasetSpec(
            "shakespeare", "tinyshakespeare/input.txt", "text", "gpt2",
            "Tiny Shakespeare, GPT-2 BPE (nanoGPT shakespeare)",
            TINY_SHAKESPEARE_URL, TINY_SHAKESPEARE_SHA256,
        ),
        DatasetSpec(
            "tinystories", "tinystories/tinystories_10k.txt", "text", "gpt2",
            "TinyStories V2 sample (~1,727 stories), GPT-2 BPE, split by story",
        ),
        DatasetSpec(
            "instruct", "instruct/instruction-data.json", "alpaca", "gpt2",
            "1,100 Alpaca-style instructions (LLMs-from-scratch ch07), GPT-2 BPE",
        ),
        DatasetSpec(
            "dialogue", "dialogue/Conversation.csv", "csv", "gpt2",
            "casual dialogues (question/answer rows chained into conversations), GPT-2 BPE",
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name]


def data_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The data folders searched, in order (duplicates removed): an explicit data_dir alone
    (DataError if it does not exist), else the default search path."""
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise DataError(f"--data-dir {data_dir} does not exist; pass the folder that holds "
                            f"the raw files, or drop --data-dir to search ${ENV_DATA_DIR}, "
                            "./data and ../shared/data")
        return [Path(data_dir).resolve()]
    cwd = Path.cwd()
    candidates = []
    if os.environ.get(ENV_DATA_DIR):
        candidates.append(Path(os.environ[ENV_DATA_DIR]))
    candidates += [
        cwd / "data", cwd.parent / "shared" / "data",
        REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data",
    ]
    out: list[Path] = []
    for c in candidates:
        c = c.resolve()
        if c not in out:
            out.append(c)
    return out


def find_data_file(relpath: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The first data dir's `relpath` that exists; DataError listing where it looked."""
    dirs = data_dirs(data_dir)
    for d in dirs:
        if (d / relpath).is_file():
            return d / relpath
    if data_dir is not None:
        raise DataError(f"{relpath} is not in --data-dir {data_dir} (an explicit --data-dir is "
                        f"the only folder searched); put it at {dirs[0] / relpath} or drop "
                        "--data-dir")
    raise DataError(
        f"{relpath} not found in any data dir ({', '.join(map(str, dirs))}); put it at "
        f"{dirs[0] / relpath} or pass --data-dir / set ${ENV_DATA_DIR}"
    )


def dataset_file(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The raw file of a named dataset, downloading it if it has a URL and is missing."""
    spec = get_spec(name)
    data_dirs(data_dir)  # an explicit --data-dir that does not exist fails here, not later
    try:
        return find_data_file(spec.path, data_dir)
    except DataError:
        if spec.url is None:
            raise
    dest = Path(data_dir if data_dir is not None else Path.cwd() / "data") / spec.path
    try:
        download(spec.url, dest, spec.sha256)
    except (OSError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
        raise DataError(
            f"{spec.path} is not in any data dir and downloading it failed ({e}); download "
            f"{spec.url} and save it as {dest}"
        ) from None
    return dest


def download(
    url: str, dest: Path, sha256: str | None, timeout: float = DOWNLOAD_TIMEOUT_S
) -> None:
    """Fetch `url` to `dest` (temp file, hash check, rename)."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = r.read()
    if sha256 is not None and hashlib.sha256(body).hexdigest() != sha256:
        raise DataError(f"downloaded {url} but its sha256 is not {sha256}; not saved")
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(dest, body)  # a full disk leaves no partial file (safe_io.WriteError)


# ---- reading raw files ------------------------------------------------------------------------
def read_text_file(path: str | os.PathLike) -> str:
    """The file's text; DataError if it is missing, empty or not UTF-8 (naming the offset)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} does not exist; check the path")
    raw = path.read_bytes()
    start = 3 if raw.startswith(b"\xef\xbb\xbf") else 0  # skip a UTF-8 byte-order mark
    if not raw[start:].strip():
        raise DataError(f"{path} is empty; give a file with text in it")
    try:
        return raw[start:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = start + e.start
        raise DataError(
            f"{path} is not UTF-8: byte 0x{raw[offset]:02x} at byte offset {offset}; "
            f"re-save the file as UTF-8"
        ) from None


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_dialogue_csv(text: str, where: str = "CSV") -> list[list[chat_format.Message]]:
    """Conversations from question/answer rows; a row whose question equals the previous
    row's answer continues the previous conversation."""
    reader = csv.DictReader(io.StringIO(text))
    fields = reader.fieldnames or []
    missing = [c for c in ("question", "answer") if c not in fields]
    if missing:
        raise DataError(
            f"{where}: needs columns 'question' and 'answer' (missing {missing}; found "
            f"{fields}); rename the header row"
        )
    conversations: list[list[chat_format.Message]] = []
    prev_answer: str | None = None
    try:
        for row in reader:
            q, a = (row.get("question") or "").strip(), (row.get("answer") or "").strip()
            if not q or not a:
                continue  # a blank cell: nothing to learn from this row
            if conversations and q == prev_answer:
                # The previous answer is this question: the conversation goes on, and the
                # speaker of this answer alternates with the previous one.
                last = conversations[-1]
                role = "user" if last[-1]["role"] == "assistant" else "assistant"
                last.append({"role": role, "content": a})
            else:
                conversations.append(
                    [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                )
            prev_answer = a
    except csv.Error as e:
        raise DataError(f"{where}: malformed CSV at line {reader.line_num}: {e}") from None
    if not conversations:
        raise DataError(f"{where}: no rows with both a question and an answer")
    return conversations


def parse_alpaca(text: str, where: str = "JSON") -> list[tuple[str, str, str]]:
    """(instruction, input, output) of each Alpaca example; a missing input is ""."""
    data = _json_loads(text, where)
    if not isinstance(data, list) or not data:
        raise DataError(f"{where}: expected a non-empty JSON list of {{instruction, output}}")
    examples = []
    for i, ex in enumerate(data):
        if not isinstance(ex, dict):
            raise DataError(f"{where}: entry {i} is not an object")
        missing = [k for k in ("instruction", "output") if not isinstance(ex.get(k), str)]
        if missing:
            raise DataError(f"{where}: entry {i} lacks string field(s) {missing}")
        examples.append((ex["instruction"], str(ex.get("input") or ""), ex["output"]))
    return examples


def parse_jsonl(text: str, where: str = "JSONL") -> list[list[chat_format.Message]]:
    """Conversations from lines of {"messages": [...]}; blank lines are skipped."""
    conversations = []
    # split("\n"), not splitlines(): U+2028 and friends may sit unescaped inside JSON strings.
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        obj = _json_loads(line, where, lineno=lineno)
        if not isinstance(obj, dict) or "messages" not in obj:
            raise DataError(f"{where} line {lineno}: expected an object with 'messages'")
        conversations.append(chat_format.check_messages(obj["messages"], f"{where} line {lineno}"))
    if not conversations:
        raise DataError(f"{where}: no conversations")
    return conversations


def _json_loads(text: str, where: str, lineno: int | None = None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        line = lineno if lineno is not None else e.lineno
        raise DataError(
            f"{where}: malformed JSON at line {line} column {e.colno} ({e.msg}); fix the file"
        ) from None


def gpt2_tokenizer(data_dir: str | os.PathLike | None = None) -> GPT2Tokenizer:
    """GPT2Tokenizer from gpt2/encoder.json and gpt2/vocab.bpe in the data dirs."""
    encoder = find_data_file("gpt2/encoder.json", data_dir)
    return GPT2Tokenizer.from_files(encoder, find_data_file("gpt2/vocab.bpe", data_dir))
