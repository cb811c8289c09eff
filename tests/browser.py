"""Drive headless Chromium from tests through the DevTools protocol, with no extra packages.

Chromium started with `--remote-debugging-pipe` reads protocol commands on fd 3 and writes
replies and events on fd 4, each JSON message ended by a NUL byte. This module speaks that
protocol just enough to open a page, run JavaScript, click, type and take screenshots:

    from tests.browser import Browser, find_chromium

    path = find_chromium()              # None when no browser is installed
    with Browser(path) as browser:
        page = browser.new_page(width=1200, height=800)
        page.goto(Path("report.html").resolve().as_uri())
        assert page.evaluate("document.title") == "..."
        page.click(100, 40)
        page.screenshot(Path("artifacts/report.png"))

Every call waits at most `timeout` seconds and raises BrowserError on a protocol error, a
timeout or a browser that died; its message ends with the browser's last stderr lines.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["CHROMIUM_FLAGS", "Browser", "BrowserError", "Page", "find_chromium"]

# Quiet, hermetic, no network: what a test needs and nothing more.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
)

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class BrowserError(Exception):
    """The browser failed, timed out or answered a command with an error."""


def find_chromium() -> str | None:
    """Return the Chromium executable ($PAGEOWNER_CHROMIUM first), or None."""
    configured = os.environ.get("PAGEOWNER_CHROMIUM")
    if configured:
        return configured if shutil.which(configured) else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _high_fd(fd: int) -> int:
    """Duplicate `fd` to a number of 10 or more (close-on-exec) and close the original."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """A headless Chromium process and its DevTools pipe; use it as a context manager."""

    def __init__(self, executable: str, *, timeout: float = 30.0,
                 extra_flags: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.timeout = timeout
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self._profile = tempfile.mkdtemp(prefix="pageowner-chromium-")
        # Closed in _cleanup, when the browser is gone.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        # Our ends stay here; the child's ends become its fds 3 (commands) and 4 (replies).
        cmd_read, self._cmd_write = (_high_fd(fd) for fd in os.pipe())
        self._reply_read, reply_write = (_high_fd(fd) for fd in os.pipe())

        def child_fds() -> None:
            os.dup2(cmd_read, 3)
            os.dup2(reply_write, 4)

        argv = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}",
                *extra_flags, "about:blank"]  # fmt: skip
        try:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                # preexec_fn is unsafe with threads; these tests run none.
                close_fds=False, preexec_fn=child_fds,
            )  # fmt: skip
        except OSError as exc:
            self._cleanup()
            raise BrowserError(f"cannot start {executable}: {exc}") from None
        finally:
            os.close(cmd_read)
            os.close(reply_write)

    # -- protocol ------------------------------------------------------------------------

    def _stderr_tail(self) -> str:
        """Return the browser's last stderr lines, for error messages."""
        try:
            self._stderr.seek(0)
            lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return "\n".join(lines[-8:])

    def _fail(self, message: str) -> BrowserError:
        tail = self._stderr_tail()
        return BrowserError(f"{message}\n{tail}" if tail else message)

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                written = os.write(self._cmd_write, data)
                data = data[written:]
        except OSError as exc:
            raise self._fail(f"browser pipe closed: {exc}") from None

    def _receive(self, deadline: float) -> dict[str, Any]:
        """Return the next message from the browser."""
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail("timed out waiting for the browser")
            ready, _, _ = select.select([self._reply_read], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._reply_read, 1 << 16)
            if not chunk:
                raise self._fail("the browser exited")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._send(message)
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise self._fail(f"{method} failed: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._events.append(reply)

    def wait_event(self, method: str, session: str | None = None) -> dict[str, Any]:
        """Wait for an event (one already received counts) and return its params."""
        deadline = time.monotonic() + self.timeout
        while True:
            for index, event in enumerate(self._events):
                wanted = session is None or event.get("sessionId") == session
                if event["method"] == method and wanted:
                    del self._events[index]
                    params: dict[str, Any] = event.get("params", {})
                    return params
            reply = self._receive(deadline)
            if "method" in reply:
                self._events.append(reply)

    # -- pages ---------------------------------------------------------------------------

    def new_page(self, width: int = 1280, height: int = 800) -> Page:
        """Open a blank tab of the given viewport size."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"])
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return page

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Ask the browser to quit, then make sure it did, and remove its profile."""
        if self._process.poll() is None:
            with contextlib.suppress(BrowserError):
                self._next_id += 1
                self._send({"id": self._next_id, "method": "Browser.close", "params": {}})
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        for fd in (self._cmd_write, self._reply_read):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)
        self._stderr.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()


class Page:
    """One tab, reached through its flat DevTools session."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a command to this tab."""
        return self.browser.call(method, params, self.session)

    def goto(self, url: str) -> None:
        """Load a URL and wait for its load event."""
        self.call("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired", self.session)

    def evaluate(self, expression: str) -> Any:
        """Run JavaScript in the page and return its JSON value (promises are awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error: {text}")
        return result.get("result", {}).get("value")

    def click(self, x: float, y: float) -> None:
        """Click with the left button at viewport coordinates, as a person would."""
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent",
                      {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def type_text(self, text: str) -> None:
        """Type text into the focused element."""
        self.call("Input.insertText", {"text": text})

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
