"""Helpers shared by the benchmarks: timing, plain-text tables, profiles grouped by area."""

from __future__ import annotations

import cProfile
import gc
import pstats
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # seconds of this process's CPU (excludes waiting for fsync and other processes)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def timed(fn: Callable[[], T]) -> tuple[T, Timing]:
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, Timing(time.perf_counter() - w0, time.process_time() - c0)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}x"


def fmt_int(n: float) -> str:
    return f"{n:,.0f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    """A plain-text table; the first column is left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))

    sep = "  ".join("-" * w for w in widths)
    out = [line(cells[0]), sep] + [line(r) for r in cells[1:]]
    if title:
        out = [title, "=" * len(title), *out]
    return "\n".join(out)


# -- profiles ------------------------------------------------------------------------------------

_AREAS: list[tuple[str, str]] = [
    ("sqlalchemy/orm/", "SQLAlchemy ORM (unit of work, attributes, loading)"),
    ("sqlalchemy/", "SQLAlchemy Core (statements, execution, types, events)"),
    ("transitions/", "transitions"),
    ("cryptography/", "cryptography (Fernet)"),
    ("/json/", "json"),
    ("/workflow/", "workflow (engine, spec, fields, history)"),
    ("/reprisals/", "reprisals (services, access, models)"),
    ("/tests/bench/", "benchmark driver"),
    ("pydantic", "pydantic"),
]


def _area(key: tuple[str, int, str]) -> str:
    filename, _line, name = key
    if filename == "~":  # a builtin
        if "sqlite3.Connection" in name and "commit" in name:
            return "sqlite3 commit (WAL write, fsync)"
        if "sqlite3" in name:
            return "sqlite3 driver (C: execute, fetch, connect)"
        if "_hashlib" in name or "sha256" in name or "hexdigest" in name:
            return "hashlib"
        if "json" in name.lower():
            return "json"
        if "cryptography" in name or "rust" in name.lower():
            return "cryptography (Fernet)"
        if "psycopg" in name:
            return "psycopg driver (C)"
        return "other builtins (C)"
    if "/psycopg/" in filename and name == "wait":
        # psycopg's compiled wait is invisible to cProfile: this self time is the wait for the server
        # (round trips, and the WAL flush of every commit).
        return "waiting for PostgreSQL (psycopg wait)"
    for needle, label in _AREAS:
        if needle in filename:
            return label
    if "sqlite3" in filename:
        return "sqlite3 driver (Python part)"
    if "/psycopg/" in filename:
        return "psycopg driver (Python part)"
    return "other Python (stdlib: datetime, enum, functools, ...)"


def _short(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    for marker in ("site-packages/", "/work/main/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{filename}:{line}({name})"


@dataclass
class ProfileSummary:
    total: float
    areas: list[tuple[str, float]]  # (area, self time in seconds), largest first
    top_self: list[tuple[str, int, float]]  # (function, calls, self seconds)
    top_ours: list[tuple[str, int, float]]  # (function in workflow/ or reprisals/, calls, cumulative s)

    def render(self, title: str, limit: int = 15) -> str:
        parts = [table(["area (self time)", "seconds", "share"],
                       [(a, f"{t:.3f}", f"{100 * t / self.total:.1f}%") for a, t in self.areas], title=title)]
        parts.append(table(["function (by self time)", "calls", "self s"],
                           [(f, fmt_int(c), f"{t:.3f}") for f, c, t in self.top_self[:limit]]))
        parts.append(table(["our function (cumulative)", "calls", "cum s"],
                           [(f, fmt_int(c), f"{t:.3f}") for f, c, t in self.top_ours[:limit]]))
        return "\n\n".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"total_s": self.total, "areas": self.areas, "top_self": self.top_self, "top_ours": self.top_ours}


def profile(fn: Callable[[], object]) -> ProfileSummary:
    prof = cProfile.Profile()
    gc.collect()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    areas: dict[str, float] = {}
    total = 0.0
    for key, (_cc, _nc, tt, _ct, _callers) in raw.items():
        areas[_area(key)] = areas.get(_area(key), 0.0) + tt
        total += tt
    top_self = sorted(((_short(k), v[1], v[2]) for k, v in raw.items()), key=lambda r: -r[2])
    ours = [(_short(k), v[1], v[3]) for k, v in raw.items()
            if "/workflow/" in k[0] or "/reprisals/" in k[0]]
    return ProfileSummary(total, sorted(areas.items(), key=lambda a: -a[1]), top_self[:40],
                          sorted(ours, key=lambda r: -r[2])[:40])
