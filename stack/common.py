"""Shared helpers for running the local services: clear failures, ports, processes."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class StackError(Exception):
    """A local service could not be brought up or down; the message says why and what to do."""


def require_binary(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` was not found on PATH. {hint}")
    return path


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log yet)"
    return "\n".join("    " + line for line in text[-lines:])


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    log: Path,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Poll `ready` until it holds; fail early if the process died, late on the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            raise StackError(f"{what} exited during start-up; see its log {log}:\n{log_tail(log)}")
        time.sleep(0.25)
    raise StackError(
        f"{what} did not answer within {timeout_s:.0f}s; see its log {log}:\n{log_tail(log)}"
    )


def terminate(pid: int, *, timeout_s: float = 30.0) -> None:
    """SIGTERM, wait, then SIGKILL: a bounded, clean stop of a process group leader."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.2)
    raise StackError(f"process {pid} did not stop after SIGKILL")


def run(cmd: list[str], *, what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise StackError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{output}")
    return proc.stdout


def spawn_detached(cmd: list[str], *, log: Path) -> int:
    """Start a long-lived service outside our process tree and return its pid.

    The shell backgrounds the service and exits at once, so the service is adopted by init:
    it outlives this command, and we hold no child handle or open log file for it.
    """
    script = f"{shlex.join(cmd)} >> {shlex.quote(str(log))} 2>&1 < /dev/null & echo $!"
    out = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, check=True, start_new_session=True
    )
    return int(out.stdout.strip())
