"""Sampling profiles of the bench's own server processes, with py-spy, and their hot spots.

`profiled(pid, out)` attaches `py-spy record` to one process we started for as long as the block runs
and leaves py-spy's raw ("collapsed stacks") file at `out`. `hot_spots(out)` reads it back: for each
function, the share of samples in which it was running (self) and on the stack (total), so a bench
can print where a server spent its time next to the rate it measured. py-spy comes with the `bench`
extra; without it, profiling is refused with a clear error rather than silently skipped.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from crossdvp.errors import CrossDvpError

__all__ = ["HotSpot", "describe_profiles", "hot_spots", "profiled", "profiled_all", "py_spy"]

_RATE_HZ = 200
# Innermost frames that mean "waiting for work" (see hot_spots).
_IDLE = frozenset(
    {"select", "poll", "EpollSelector.select", "PollSelector.select", "SelectSelector.select"}
    | {"BaseEventLoop._run_once", "_run_once", "Runner.run", "Condition.wait"}
)


def py_spy() -> str:
    """The py-spy executable beside this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise CrossDvpError("profiling needs py-spy: pip install -e '.[bench]'")
    return found


@contextmanager
def profiled(pid: int, out: Path) -> Iterator[None]:
    """Sample process `pid` with py-spy while the block runs; the collapsed stacks end up in `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".py-spy.log")
    with log.open("wb") as sink:
        recorder = subprocess.Popen(
            [
                *(py_spy(), "record", "--pid", str(pid), "--rate", str(_RATE_HZ)),
                *("--format", "raw", "--output", str(out), "--nonblocking"),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield
    finally:
        # py-spy writes its file when interrupted, as on Ctrl-C.
        if recorder.poll() is None:
            recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait(timeout=10)
    if not out.exists():
        raise CrossDvpError(f"py-spy wrote no profile for pid {pid}; see {log}")


@contextmanager
def profiled_all(pids: Mapping[str, int], directory: Path) -> Iterator[None]:
    """`profiled` for several processes at once: `<name>.txt` in `directory` for each name -> pid."""
    with ExitStack() as stack:
        for name, pid in pids.items():
            stack.enter_context(profiled(pid, directory / f"{name}.txt"))
        yield


def describe_profiles(directory: Path, *, top: int = 12) -> list[str]:
    """Printable hot spots of every profile in `directory` (what the benches print after a run)."""
    lines = []
    for raw in sorted(directory.glob("*.txt")):
        lines.append(f"hot spots of {raw.stem} (share of busy samples; py-spy raw file {raw}):")
        lines.extend(f"  {spot.describe()}" for spot in hot_spots(raw, top=top))
    return lines


@dataclass(frozen=True, slots=True)
class HotSpot:
    """One function: where it is, and its share of all samples (self: running; total: on the stack)."""

    function: str
    self_share: float
    total_share: float

    def describe(self) -> str:
        return f"{self.self_share:6.1%} self {self.total_share:6.1%} total  {self.function}"


def _frame_name(frame: str) -> str:
    # py-spy frames read "function (path/to/file.py:line)"; keep the function and file, not the line.
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})" if path else name


def hot_spots(raw: Path, *, top: int = 15, include_idle: bool = False) -> list[HotSpot]:
    """The `top` functions by self time in a py-spy raw file (frames merged by function and file).

    Samples whose innermost frame is a wait for work are idle, not work: the event loop in
    `select`/`poll` (or in uvloop's C loop, which py-spy shows as `Runner.run`) and idle worker threads
    in `Condition.wait`. They are left out unless `include_idle`, so the shares are of the time the
    process was busy. Waits for a database (psycopg's `Connection.wait`) count as busy.
    """
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_frame_name(f) for f in stack.split(";")]
        if not include_idle and frames[-1].partition(" (")[0] in _IDLE:
            continue
        count = int(count_text)
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    if samples == 0:
        return []
    return [HotSpot(name, count / samples, total[name] / samples) for name, count in own.most_common(top)]
