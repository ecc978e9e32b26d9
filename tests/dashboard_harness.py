"""What the dashboard's browser tests and its screenshot script share: a real ``framework
run`` serving HTTP (with tests/dashboard_plugin.py's workers) and a headless Chromium driven
by Selenium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

TESTS = Path(__file__).resolve().parent
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
START_TIMEOUT = 20.0


@dataclass(frozen=True)
class Browser:
    """Where the browser and its driver are."""

    chromium: str
    chromedriver: str


def find_browser() -> Browser | None:
    """Debian's ``chromium`` and ``chromium-driver`` (or the same on the PATH), else None."""
    chromium = next(
        (found for name in CHROMIUM_NAMES if (found := shutil.which(name)) is not None), None
    )
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        return None
    return Browser(chromium, chromedriver)


def new_driver(browser: Browser, width: int = 1400, height: int = 900) -> WebDriver:
    """A headless Chromium; the page's console messages are kept (``get_log("browser")``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser.chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # containers and CI run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(browser.chromedriver))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Served:
    """A runner serving HTTP: its base URL and the token it needs (None: none)."""

    url: str
    token: str | None
    process: subprocess.Popen[str]

    def client(self) -> httpx.Client:
        """An HTTP client for the API (with the token when there is one)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


@contextmanager
def serve(
    token: str | None = None, plugins: tuple[str, ...] = ("dashboard_plugin",)
) -> Iterator[Served]:
    """Run ``framework -p PLUGIN... run --http 127.0.0.1:PORT`` (plugin modules of tests/)
    until the block ends; it is ready once ``/v1/health`` answers."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(TESTS),
        "FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    env.pop("FRAMEWORK_PLUGINS", None)
    env.pop("FRAMEWORK_HTTP_TOKEN", None)
    if token is not None:
        env["FRAMEWORK_HTTP_TOKEN"] = token
    command = [sys.executable, "-m", "framework"]
    for plugin in plugins:
        command += ["-p", plugin]
    command += ["run"]
    command += ["--http", f"127.0.0.1:{port}"]
    # In a directory of its own: no framework.toml around; stderr to a file, which never
    # fills up and blocks the runner the way an unread pipe would.
    with tempfile.TemporaryDirectory() as cwd, open(Path(cwd) / "stderr", "w+") as err:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=err, text=True, env=env, cwd=cwd
        )
        served = Served(f"http://127.0.0.1:{port}", token, process)
        try:
            _wait_healthy(served, Path(cwd) / "stderr")
            yield served
        finally:
            _stop(process)


def _wait_healthy(served: Served, stderr: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if served.process.poll() is not None:
            raise RuntimeError(
                f"framework run exited {served.process.returncode}:\n{stderr.read_text()}"
            )
        try:
            if httpx.get(f"{served.url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"framework run did not answer /v1/health within {START_TIMEOUT} s")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: the runner ends gracefully
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class CuttableProxy:
    """A TCP proxy on a free port in front of ``target_port``: ``cut()`` closes every
    connection through it, as a network blip would (new connections still pass);
    ``stall()`` stops passing data until ``resume()``, as a client too slow to read would.

    Its connections to the target have a small receive buffer, so that a stall fills the
    target's side after a few hundred kilobytes, not the megabytes a kernel may buffer."""

    RECEIVE_BUFFER = 32 * 1024

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._flowing = threading.Event()
        self._flowing.set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.socket()
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RECEIVE_BUFFER)
            upstream.connect(("127.0.0.1", self.target_port))
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while self._flowing.wait() and (data := source.recv(65536)):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Close every open connection."""
        with self._lock:
            cut, self._open = self._open, []
        for end in cut:
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def stall(self) -> None:
        """Stop reading from either side (what is in flight still arrives)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Pass data again."""
        self._flowing.set()

    def close(self) -> None:
        self.listener.close()
        self.resume()
        self.cut()
