"""The finance API as a child process (``incentives api`` on a free port), and its keys, as
a user runs them."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from ingest_support import PROJECT_ROOT, env_for, run_cli

from schemas.settings import Settings

START_DEADLINE_S = 60.0
_LISTENING = re.compile(r"finance API on (http://[0-9.]+:\d+)")


class Api:
    """``incentives api`` with port 0; ``base`` is the address it logged."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "incentives.cli", "api"],
                env=env_for(settings, INCENTIVES_API_PORT="0"), cwd=PROJECT_ROOT,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.base = self._wait_listening()

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                raise AssertionError(f"the API exited with {self.process.returncode}:\n"
                                     f"{self.log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        raise AssertionError(f"the API did not log its address within {START_DEADLINE_S}s")

    def __enter__(self) -> Api:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def make_key(settings: Settings, role: str, partner: str | None = None) -> str:
    args = ["api-keys", "create", "--role", role] + (["--partner", partner] if partner else [])
    done = run_cli(settings, *args)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("ik_") and "shown once" in done.stderr, (done.stdout, done.stderr)
    return key
