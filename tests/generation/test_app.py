"""The Streamlit chat page (chat_app.py): driven by Streamlit's AppTest, and once through a
real headless browser (Debian's chromium via Playwright) against `streamlit run`.

Skipped, with the reason, where streamlit (AppTest), or playwright and chromium (the
browser test), are not installed: the page is an optional part of the project.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import twin_named

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "chat_app.py"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytest.importorskip("streamlit", reason="the chat page needs streamlit (pip install streamlit)")
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ckpt(tiny_chat: tuple[Path, Path]) -> Path:
    return tiny_chat[1]


def page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    return at.run()


def replies(at: AppTest) -> list[tuple[str, str]]:
    """(role, text) of each chat message on the page."""
    out = []
    for m in at.chat_message:
        texts = [getattr(c, "value", "") for c in m.children.values()]
        out.append((m.name, " ".join(t for t in texts if isinstance(t, str))))
    return out


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_page_chats_with_a_checkpoint(ckpt: Path, backend: str) -> None:
    at = page()
    assert not at.exception and "Enter a checkpoint folder" in at.info[0].value
    at.sidebar.radio(key="backend").set_value(backend)
    at.sidebar.text_input(key="ckpt").input(str(ckpt)).run()
    assert not at.exception and not at.error
    caption = at.sidebar.caption[0].value
    assert f"{backend} twin, chat format by default, context 64 tokens" in caption
    at.sidebar.slider(key="temperature").set_value(0.5)
    at.sidebar.slider(key="top_k").set_value(0)  # off
    at.chat_input[0].set_value("hi i am ada").run()
    assert not at.exception
    msgs = replies(at)
    assert [r for r, _ in msgs] == ["user", "assistant"] and msgs[0][1] == "hi i am ada"
    assert msgs[1][1].strip()  # a reply (or the note that there was none)
    assert at.session_state.session.config.temperature == 0.5
    assert at.session_state.session.config.top_k is None

    at.sidebar.toggle(key="greedy").set_value(True).run()  # what it overrides is disabled
    assert at.session_state.session.config.greedy
    assert all(at.sidebar.slider(key=k).disabled for k in ("temperature", "top_k", "top_p"))
    assert not at.sidebar.slider(key="rep").disabled
    at.chat_input[0].set_value("say bob").run()
    assert [r for r, _ in replies(at)] == ["user", "assistant"] * 2  # the history is kept
    at.sidebar.button(key="reset").click().run()
    assert replies(at) == [] and at.session_state.session.history == []


def test_page_reports_a_bad_checkpoint_in_one_line(tmp_path: Path) -> None:
    at = page()
    at.sidebar.text_input(key="ckpt").input(str(tmp_path / "missing")).run()
    assert not at.exception
    assert at.error[0].value.startswith(f"cannot load {tmp_path / 'missing'}: no checkpoint")
    at.sidebar.text_input(key="ckpt").input(str(tmp_path)).run()
    assert "config.json" in at.error[0].value


def test_page_uses_the_adapter_format_and_refuses_a_misplaced_adapter(tiny_lora) -> None:
    """The caption shows the format recorded by the adapter (the base records none) and where
    it comes from; an adapter on the model it is merged into, or on another base, is one line;
    an old adapter is used with a warning saying what is assumed."""
    base, alpaca = tiny_lora["base"], tiny_lora["alpaca"]
    at = page()
    at.sidebar.text_input(key="ckpt").input(str(base))
    at.sidebar.text_input(key="adapter").input(str(alpaca)).run()
    assert not at.exception and not at.error
    assert at.sidebar.caption[0].value == ("numpy twin, alpaca format as recorded by the "
                                           "adapter, context 64 tokens")
    assert at.session_state.session.template == "alpaca"
    for ckpt, why in (("merged", "is already merged into"),
                      ("other", "was trained on another base than")):
        at.sidebar.text_input(key="ckpt").input(str(tiny_lora[ckpt])).run()
        assert not at.exception
        assert at.error[0].value.startswith(f"cannot load {tiny_lora[ckpt]}: the adapter "
                                            f"{alpaca} {why} {tiny_lora[ckpt]}")
    at.sidebar.text_input(key="ckpt").input(str(base))
    at.sidebar.text_input(key="adapter").input(str(tiny_lora["legacy"])).run()
    assert not at.exception and not at.error
    assert at.sidebar.warning[0].value.startswith(f"the adapter {tiny_lora['legacy']} does "
                                                  "not record the base it was trained on")


def test_streamlit_config_listens_on_localhost_only() -> None:
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost" and config["server"]["headless"] is True


# ---------------------------------------------------------------------- a real browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{server.stdout.read()}")
        try:
            with socket.create_connection(("localhost", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit did not listen on port {port} within {timeout} s")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
def test_browser_sends_a_message_and_sees_a_reply(ckpt: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api",
                                     reason="needs the playwright package (pip install "
                                            "playwright; it drives the system chromium)")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
         "--server.address", "localhost", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--", "--ckpt", str(ckpt)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_port(port, server, timeout=60)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"])  # root in containers
            try:
                tab = browser.new_page()
                tab.goto(f"http://localhost:{port}", timeout=30_000)
                box = tab.get_by_test_id("stChatInputTextArea")
                box.wait_for(timeout=30_000)
                box.fill("hi i am ada")
                box.press("Enter")
                messages = tab.get_by_test_id("stChatMessage")
                messages.nth(1).wait_for(timeout=30_000)
                tab.wait_for_function(  # the reply has streamed in
                    "() => document.querySelectorAll('[data-testid=stChatMessage]')[1]"
                    ".innerText.trim().length > 0", timeout=30_000)
                texts = messages.all_inner_texts()
            finally:
                browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert len(texts) == 2 and "hi i am ada" in texts[0]
    assert texts[1].strip()


# ---------------------------------------------------------------------- two tabs at once


def chat_in(at: AppTest, ckpt: Path, messages: list[str]) -> AppTest:
    """A tab on `ckpt` (greedy: its replies are a function of its own conversation) that
    sends `messages` one after the other."""
    at.sidebar.text_input(key="ckpt").input(str(ckpt))
    at.sidebar.toggle(key="greedy").set_value(True)
    at.sidebar.slider(key="max_new_tokens").set_value(12).run()
    for message in messages:
        at.chat_input[0].set_value(message).run()
    return at


TALKS = {"a": ["hi i am ada", "say bob", "again"],
         "b": ["what is 1 plus 2?", "hi i am eve", "say cy"]}


def test_two_tabs_chatting_in_turns_keep_their_own_conversations(ckpt: Path) -> None:
    """Two tabs on one shared model (st.cache_resource), their messages interleaved: each page
    shows its own messages, and each reply is the one that conversation gets alone."""
    alone = {k: replies(chat_in(page(), ckpt, msgs)) for k, msgs in TALKS.items()}
    for k, msgs in TALKS.items():
        assert [t for r, t in alone[k] if r == "user"] == msgs
    tabs = {k: chat_in(page(), ckpt, []) for k in TALKS}
    for turn in range(3):
        for k, at in tabs.items():
            at.chat_input[0].set_value(TALKS[k][turn]).run()
    for k, at in tabs.items():
        assert not at.exception and not at.error
        assert replies(at) == alone[k]
        history = at.session_state.session.history
        assert [m["content"] for m in history if m["role"] == "user"] == TALKS[k]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_two_sessions_generating_at_once_on_one_model(ckpt: Path, backend: str) -> None:
    """What two tabs do at the same moment: two ChatSessions on one loaded ChatModel, replying
    in two threads at once (Streamlit runs each tab's script in its own thread; AppTest cannot
    run two pages at once). Generating changes nothing shared, so each conversation equals
    the same conversation held alone."""
    import threading

    from numpy_gpt.generation.chat import ChatSession, load_chat_model

    model = load_chat_model(twin_named(backend), ckpt)

    def converse(k: str, out: dict) -> None:
        session = ChatSession.start(model)
        session.update(greedy=True, max_new_tokens=24)
        for message in TALKS[k] * 3:
            _, chunks = session.send(message)
            "".join(chunks)
        out[k] = session.history

    alone: dict = {}
    for k in TALKS:
        converse(k, alone)
    together: dict = {}
    errors: list[BaseException] = []

    def run(k: str) -> None:
        try:
            converse(k, together)
        except BaseException as e:  # noqa: BLE001 - reported in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in TALKS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert together == alone


def test_a_very_long_pasted_message_is_cropped_with_a_notice(ckpt: Path) -> None:
    at = page()
    at.sidebar.text_input(key="ckpt").input(str(ckpt)).run()
    pasted = "hi i am ada and this is a very long message. " * 5000  # 230 KB
    at.chat_input[0].set_value(pasted).run()
    assert not at.exception and not at.error and not at.warning
    session = at.session_state.session
    sent = session.history[0]["content"]
    assert pasted.strip().endswith(sent) and len(sent) < 64
    msgs = replies(at)
    assert msgs[0] == ("user", sent)  # the page shows what the model was given
    notes = [c.value for c in at.caption]
    assert any(n == f"your message is longer than the model's context: kept its last "
               f"{len(sent)} characters" for n in notes), notes
