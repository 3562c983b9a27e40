"""Real servers for the tests and the browser benchmark: a free localhost port, a health
probe, a server process held for a `with` block, and how Chromium is started (Debian's
package through Playwright's `executable_path`: nothing is downloaded)."""
from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from conftest import wait_for

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


@dataclass(frozen=True)
class Server:
    url: str
    proc: subprocess.Popen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bytes | None:
    """The body of a 200 answer to GET `url`; None for any other answer or none."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read() if r.status == 200 else None
    except OSError:
        return None


def healthy(url: str) -> bool:
    return answers(f"{url}/_stcore/health") == b"ok"


def streamlit_cmd(port: int) -> list[str]:
    """`streamlit run app.py` on `port`, headless, no file watcher, no usage statistics."""
    return [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
            "--server.address", "127.0.0.1", "--server.port", str(port),
            "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]


@contextmanager
def serving(cmd: list[str], port: int, *, cwd: Path, log: Path,
            env: dict[str, str] | None = None, timeout: float = 90) -> Iterator[Server]:
    """Start `cmd` (a Streamlit server on `port`), yield it once /_stcore/health answers ok,
    and stop it after the block. `env` is its whole environment (None: this process's); its
    output goes to `log`; exiting first raises."""
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: proc.poll() is not None or healthy(url), timeout=timeout,
                     every=0.2, what=f"{Path(cmd[0]).name} to answer /_stcore/health")
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}; see {log}")
            yield Server(url, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
