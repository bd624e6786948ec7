"""Start, probe and stop the processes crossdvp is made of: anvil, the payments service, oracle nodes.

Tests, the devnet and the docs all start processes through this module, so every process is started
the same way: its own log file, a port chosen on 127.0.0.1 unless given, readiness probed before the
caller goes on, and stopping only ever by the PID we started (SIGTERM, then SIGKILL after a grace).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crossdvp.errors import CrossDvpError

__all__ = [
    "ManagedProcess",
    "ProcessStartError",
    "free_port",
    "pid_alive",
    "port_open",
    "start_process",
    "stop_pid",
]


class ProcessStartError(CrossDvpError):
    """A process exited or never became ready; the message includes the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists and is not a zombie we could reap."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child that exited but was not reaped still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def stop_pid(pid: int, grace_s: float = 5.0) -> None:
    """Stop one process by its PID: SIGTERM, wait up to `grace_s`, then SIGKILL. Never signals a group."""
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.02)


@dataclass
class ManagedProcess:
    """A process we started: its PID, its log file and how to stop it."""

    name: str
    argv: tuple[str, ...]
    log_path: Path
    popen: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; waits until the process is gone."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash would; waits until the process is gone."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_process(
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 30.0,
) -> ManagedProcess:
    """Start `argv`, send its output to `log_path`, and wait until `ready()` is true.

    Raises ProcessStartError if the process exits first or is not ready within `timeout_s`; in
    both cases the process is stopped before raising, so a failed start leaves nothing running.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,  # a Ctrl-C in the parent's terminal must not kill it half-way
        )
    proc = ManagedProcess(name=name, argv=tuple(argv), log_path=log_path, popen=popen)
    deadline = time.monotonic() + timeout_s
    while True:
        if popen.poll() is not None:
            raise ProcessStartError(
                f"{name} exited with code {popen.returncode} before it was ready; "
                f"log {log_path}:\n{proc.log_tail()}"
            )
        if ready():
            return proc
        if time.monotonic() > deadline:
            proc.kill()
            raise ProcessStartError(
                f"{name} was not ready within {timeout_s:.0f}s; log {log_path}:\n{proc.log_tail()}"
            )
        time.sleep(0.05)
