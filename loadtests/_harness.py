"""Shared helpers for the load tests: bounded timing loops, latency
statistics, plain-text tables, ratios and JSON results.

Everything here is measurement plumbing; nothing here knows what is being
measured. Benchmarks time with :func:`time.perf_counter` per call, so that
tail latencies (p99) are real per-call figures, not averages of batches.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "Bounded",
    "Check",
    "LatencyStats",
    "format_rate",
    "format_ratio",
    "format_table",
    "format_us",
    "machine_info",
    "percentile",
    "ratio",
    "time_each",
    "time_interleaved",
    "time_once",
    "write_json",
]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Per-call latencies of one measurement, in seconds.

    ``per_second`` is ``count / total``: the rate one caller sees when it
    issues the calls back to back, which is what "proofs/s" means here.
    ``capped`` says the wall-time cap cut the run short of its count.
    """

    count: int
    total: float
    mean: float
    p50: float
    p99: float
    max: float
    per_second: float
    capped: bool

    @classmethod
    def of(cls, latencies: Sequence[float], *, capped: bool = False) -> LatencyStats:
        """Summarise ``latencies``; requires at least one sample."""
        if not latencies:
            raise ValueError("no samples")
        ordered = sorted(latencies)
        total = math.fsum(ordered)
        return cls(
            count=len(ordered),
            total=total,
            mean=total / len(ordered),
            p50=percentile(ordered, 50.0),
            p99=percentile(ordered, 99.0),
            max=ordered[-1],
            per_second=len(ordered) / total if total > 0 else math.inf,
            capped=capped,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence.

    Nearest-rank never interpolates, so a p99 is always a latency that some
    call really had.
    """
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Bounded:
    """Limits for one measurement: at most ``max_calls`` calls and, checked
    between calls, at most ``max_seconds`` of wall time."""

    max_calls: int
    max_seconds: float


def time_each(
    fn: Callable[[T], R], args: Iterable[T], bound: Bounded
) -> tuple[LatencyStats, list[tuple[T, R]]]:
    """Call ``fn(arg)`` for each arg until a bound is hit, timing every call.

    Returns the latency summary and each ``(arg, result)``, so the caller can
    verify what was produced: a benchmark that never checks its output may
    be timing garbage.
    """
    latencies: list[float] = []
    results: list[tuple[T, R]] = []
    clock = time.perf_counter
    deadline = clock() + bound.max_seconds
    capped = False
    for arg in args:
        if len(latencies) >= bound.max_calls:
            break
        if latencies and clock() > deadline:
            capped = True
            break
        start = clock()
        result = fn(arg)
        latencies.append(clock() - start)
        results.append((arg, result))
    return LatencyStats.of(latencies, capped=capped), results


_END = object()  # what next() gives for a subject's arguments run out


def time_interleaved(
    subjects: dict[str, tuple[Callable[[T], R], Sequence[T]]], bound: Bounded, chunk: int = 500
) -> dict[str, tuple[LatencyStats, list[tuple[T, R]]]]:
    """:func:`time_each` for several subjects at once, taking turns.

    ``subjects`` maps a name to ``(fn, args)``. Each turn times up to
    ``chunk`` calls of one subject, then moves to the next, so that whatever
    else the machine does during the run falls on every subject alike: the
    ratio of two subjects' tails then measures the subjects, not the minute
    each happened to run in. ``bound`` applies to each subject on its own
    (its calls, and the wall time of its own turns).
    """
    clock = time.perf_counter
    latencies: dict[str, list[float]] = {name: [] for name in subjects}
    results: dict[str, list[tuple[T, R]]] = {name: [] for name in subjects}
    pending = {name: iter(args) for name, (_, args) in subjects.items()}
    spent = dict.fromkeys(subjects, 0.0)
    capped = dict.fromkeys(subjects, False)
    while pending:
        for name in list(pending):
            fn = subjects[name][0]
            lat, res, args_left = latencies[name], results[name], pending[name]
            turn_start = clock()
            exhausted = False
            for _ in range(chunk):
                if len(lat) >= bound.max_calls:
                    exhausted = True
                    break
                arg = next(args_left, _END)
                if arg is _END:
                    exhausted = True
                    break
                start = clock()
                result = fn(arg)  # type: ignore[arg-type]
                lat.append(clock() - start)
                res.append((arg, result))  # type: ignore[arg-type]
            spent[name] += clock() - turn_start
            if not exhausted and spent[name] > bound.max_seconds:
                capped[name] = True
                exhausted = True
            if exhausted:
                del pending[name]
    return {
        name: (LatencyStats.of(latencies[name], capped=capped[name]), results[name])
        for name in subjects
    }


def time_once(fn: Callable[[], R]) -> tuple[float, R]:
    """Wall time of one call of ``fn`` and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def ratio(ours: float | None, baseline: float | None) -> float | None:
    """``ours / baseline`` for rates (higher is better for ours), or ``None``
    when either side was not measured."""
    if ours is None or baseline is None or baseline == 0:
        return None
    return ours / baseline


def format_rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def format_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    return f"{value:.2f}x"


def format_us(seconds: float | None) -> str:
    """A latency in microseconds, to a sensible precision."""
    if seconds is None:
        return "-"
    us = seconds * 1e6
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned.

    Plain text, not a library, so the output pastes into an issue note as is.
    """
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:]))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


@dataclass(frozen=True, slots=True)
class Check:
    """One target: ``value`` (a ratio) against ``threshold``, either a floor
    (``at_least``) or a ceiling. A value that could not be measured fails."""

    name: str
    value: float | None
    threshold: float
    at_least: bool

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        return self.value >= self.threshold if self.at_least else self.value <= self.threshold

    def line(self) -> str:
        op = ">=" if self.at_least else "<="
        verdict = "PASS" if self.passed else "FAIL"
        return f"{verdict}  {self.name}: {format_ratio(self.value)} ({op} {self.threshold:g}x)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "at_least": self.at_least,
            "pass": self.passed,
        }


def _proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (the state is
    [0], the parent pid [1]); None for a process that is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds so far of the live processes ``pids`` (0
    for one that is gone)."""
    ticks = 0
    for pid in pids:
        fields = _proc_stat(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The live children of process ``pid``."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(entry.name)
            if fields is not None and int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare figures across runs."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (temp file, then rename), so a
    killed run never leaves half a results file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
