"""The HTML report in a real browser: headless Chromium opens it from disk (file://), every image
loads, the console stays clean, and a full-page screenshot is saved to test-artifacts/.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so nothing beyond the standard
library is needed.  Skipped, with the reason shown, when no Chromium is installed
(``scripts/system-deps.sh`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from test_report import make_run  # the same run directory as the report tests

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe"]


def find_chromium() -> str | None:
    """Chromium's path: ``$LSTMLAB_CHROMIUM`` if set (``none`` disables the test), else the PATH."""
    env = os.environ.get("LSTMLAB_CHROMIUM")
    if env is not None:
        return env if env != "none" and os.access(env, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


class Browser:
    """A headless Chromium driven over the DevTools protocol through a pair of pipes."""

    def __init__(self, exe: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="lstmlab-chromium-")
        to_r, to_w = os.pipe()      # we write commands, Chromium reads fd 3
        from_r, from_w = os.pipe()  # Chromium writes fd 4, we read
        # copies numbered >= 10 (close-on-exec) so that dup2 onto 3 and 4 cannot clobber them
        hi_r, hi_w = _dup_high(to_r), _dup_high(from_w)

        def child_fds() -> None:  # runs in the child between fork and exec
            os.dup2(hi_r, 3)  # dup2 clears close-on-exec: 3 and 4 survive exec
            os.dup2(hi_w, 4)

        self.log = tempfile.TemporaryFile()
        # close_fds=False keeps 3 and 4; every other descriptor Python opens is close-on-exec
        self.proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
            close_fds=False, preexec_fn=child_fds)
        for fd in (to_r, from_w, hi_r, hi_w):
            os.close(fd)
        self.w, self.r = to_w, from_r
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    # --- protocol -------------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium: no answer on the DevTools pipe")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the DevTools pipe: {self.stderr_tail()}")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, session: str | None = None) -> dict:
        for k, e in enumerate(self.events):
            if e.get("method") == method and (session is None or e.get("sessionId") == session):
                return self.events.pop(k)
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read_message(deadline)
            if m.get("method") == method and (session is None or m.get("sessionId") == session):
                return m
            self.events.append(m)

    # --- a page ---------------------------------------------------------------------------------
    def open(self, url: str, width: int = 1200, height: int = 900) -> str:
        """Open ``url`` in a new tab, wait for the load event; return the session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        self.send("Page.navigate", {"url": url}, session)
        self.wait_event("Page.loadEventFired", session)
        return session

    def evaluate(self, expression: str, session: str):
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True}, session)
        if "exceptionDetails" in res:
            raise RuntimeError(f"evaluate: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, session: str, path: Path, max_height: int = 16000) -> None:
        """A full-page PNG (height capped at ``max_height`` pixels)."""
        size = self.send("Page.getLayoutMetrics", session=session)
        content = size.get("cssContentSize") or size["contentSize"]
        width, height = int(content["width"]), min(int(content["height"]), max_height)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {"x": 0, "y": 0, "width": width, "height": height,
                                                             "scale": 1}}, session)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def problems(self, session: str) -> list[str]:
        """Console errors/warnings, uncaught exceptions and failed loads seen so far."""
        out = []
        for e in self.events:
            if e.get("sessionId") != session:
                continue
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description")))
                                                                 for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                entry = p["entry"]
                out.append(f"log.{entry.get('level')} ({entry.get('source')}): {entry.get('text')} "
                           f"{entry.get('url', '')}")
        return out

    def stderr_tail(self, n: int = 2000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-n:]

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self.w, self.r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def _dup_high(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed (run scripts/system-deps.sh as root, or "
                    "apt-get install chromium; or point LSTMLAB_CHROMIUM at a Chromium binary)")
    return exe


def test_report_in_headless_chromium(chromium, tmp_path):
    from lstmlab.report import write_report

    run_dir = make_run(tmp_path / "run")
    page = write_report(run_dir)
    browser = Browser(chromium)
    try:
        session = browser.open(page.resolve().as_uri())
        images = browser.evaluate(
            "Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))"
            ".then(() => Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
            "w: i.naturalWidth, h: i.naturalHeight})))", session)
        texts = "Array.from(document.querySelectorAll('{}')).map(e => e.textContent)"
        sections = browser.evaluate(texts.format("section h2"), session)
        notes = browser.evaluate(texts.format(".note"), session)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "report.png"
        browser.screenshot(session, shot)
        problems = browser.problems(session)
    finally:
        browser.close()
    assert len(images) >= 6, images  # curves, timeline, flow, attention x3, gates
    bad = [i for i in images if not i["complete"] or i["w"] <= 0 or i["h"] <= 0]
    assert not bad, f"images that did not load: {bad}"
    assert problems == [], problems
    assert sections[:3] == ["Summary and test metrics", "Training curves", "Gradient health"], sections
    assert "Attention" in sections and "Gate activations" in sections
    assert notes == [], notes
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
