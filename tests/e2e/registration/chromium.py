"""Headless Chromium driven through the Chrome DevTools Protocol over ``--remote-debugging-pipe``.

The pipe transport needs no WebSocket client and no third-party package: Chromium reads commands from
file descriptor 3 and writes answers and events to descriptor 4, each message JSON ended by a NUL byte.
Only what the browser tests need: open a tab, navigate, click, fill a field, read the DOM, take
screenshots, and know each document's HTTP status.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

BINARIES = ("chromium", "chromium-browser", "google-chrome")
DEFAULT_TIMEOUT = 20.0


def find_chromium() -> str | None:
    configured = os.environ.get("CHROMIUM_BIN")
    if configured:
        return configured if Path(configured).is_file() else None
    return next((found for name in BINARIES if (found := shutil.which(name))), None)


def _high(fd: int) -> int:
    """A copy of ``fd`` numbered 100 or more (close-on-exec), so dup2 onto 3 and 4 never clobbers it."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
    os.close(fd)
    return moved


class CdpError(RuntimeError):
    pass


class Chromium:
    def __init__(self, binary: str, profile: Path) -> None:
        commands_read, commands_write = (_high(fd) for fd in os.pipe())
        answers_read, answers_write = (_high(fd) for fd in os.pipe())
        arguments = [
            binary,
            "--headless",
            "--remote-debugging-pipe",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--password-store=basic",
            "--window-size=1024,1400",
            f"--user-data-dir={profile}",
        ]
        if os.geteuid() == 0:
            arguments.append("--no-sandbox")  # Chromium refuses to sandbox as root (CI containers)
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            self.pid = os.posix_spawn(
                binary,
                [*arguments, "about:blank"],
                dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0),
                    (os.POSIX_SPAWN_DUP2, devnull, 1),
                    (os.POSIX_SPAWN_DUP2, devnull, 2),
                    (os.POSIX_SPAWN_DUP2, commands_read, 3),
                    (os.POSIX_SPAWN_DUP2, answers_write, 4),
                ],
                setpgroup=0,
            )
        finally:
            for fd in (devnull, commands_read, answers_write):
                os.close(fd)
        self._out = commands_write
        self._in = answers_read
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self._answers: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(CdpError, OSError, TimeoutError):
            self.call("Browser.close", timeout=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                break
            time.sleep(0.05)
        else:
            os.killpg(self.pid, signal.SIGKILL)  # the process group this class started, nothing else
            os.waitpid(self.pid, 0)
        for fd in (self._out, self._in):
            os.close(fd)

    # Protocol ------------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while self._next_id not in self._answers:
            self._read(deadline)
        answer = self._answers.pop(self._next_id)
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, start: int = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        position = start
        while True:
            while position < len(self.events):
                event = self.events[position]
                position += 1
                if predicate(event):
                    return event
            self._read(deadline)

    def _read(self, deadline: float) -> None:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from Chromium in time")
            ready, _, _ = select.select([self._in], [], [], remaining)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise CdpError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "id" in message:
            self._answers[int(message["id"])] = message
        else:
            self.events.append(message)

    def new_tab(self) -> Tab:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        tab = Tab(self, str(session))
        for domain in ("Page", "Network", "Runtime"):
            tab.call(f"{domain}.enable")
        return tab


class Tab:
    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session
        self.status: int | None = None

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, session=self.session)

    def _settle(self, start: int) -> int:
        """Wait for the next page load of this tab; its document's HTTP status."""
        mine = self.session

        def loaded(event: dict[str, Any]) -> bool:
            return event.get("sessionId") == mine and event.get("method") == "Page.loadEventFired"

        self.browser.wait_for(loaded, start=start)
        documents = [
            event["params"]["response"]["status"]
            for event in self.browser.events[start:]
            if event.get("sessionId") == mine
            and event.get("method") == "Network.responseReceived"
            and event["params"].get("type") == "Document"
        ]
        self.status = int(documents[-1]) if documents else None
        return self.status or 0

    def goto(self, url: str) -> int:
        start = len(self.browser.events)
        self.call("Page.navigate", {"url": url})
        return self._settle(start)

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in answer:
            raise CdpError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def click(self, selector: str) -> int:
        """Click what submits a form and wait for the page it leads to."""
        start = len(self.browser.events)
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
        return self._settle(start)

    def fill(self, selector: str, value: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")

    def text(self, selector: str) -> str:
        return str(self.evaluate(f"document.querySelector({json.dumps(selector)})?.textContent ?? ''"))

    def value(self, selector: str) -> str:
        return str(self.evaluate(f"document.querySelector({json.dumps(selector)})?.value ?? ''"))

    @property
    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
