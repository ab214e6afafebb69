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

ROOT = Path(__file__).resolve().parents[1]
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
