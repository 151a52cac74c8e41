"""Benchmark 2: what a `transitions` Machine costs per in-memory instance, three ways.

Rows are plain objects with a ``stage`` attribute (what a loaded ``WorkflowInstance`` offers), spread
over the six stages of the happy path; each row fires the trigger that leaves its stage once.

* (a) ours: the engine's Machine for the spec (built once by ``build_engine``, no models), fired with
  ``machine.events[name].trigger(model)`` on a throw-away ``workflow.engine._Model`` made per firing,
  the stage copied back to the row, exactly as ``Engine.fire`` does (so nothing to attach).
* (b) a Machine per row: ``Machine(model=row, states=..., transitions=..., initial=row.stage,
  auto_transitions=False, model_attribute="stage")``, fired with the method it adds to the row.
* (c) one shared Machine with ``add_model(row, initial=row.stage)``, fired the same way.

Time (attach/create, then fire) is measured without tracemalloc; peak memory in a separate pass
with tracemalloc (which slows allocation down), counting what is allocated beyond the rows.
The time per transition is the best of four passes over all rows (each row fires the trigger that
leaves its current stage; ``reopen`` takes a closed row round again).

Attaching runs in chunks of 1,000 rows with the elapsed time recorded after each. From 10,000 rows
on, a least-squares fit of those points (a*n + b*n^2: ``add_model`` scans a list, a Machine per row
loads the cyclic garbage collector) predicts the time at N; when that is above 60 s the approach
stops there and is extrapolated instead, and the output says so, showing the measured part scaled
linearly (a lower bound) and what the fit predicts (an approach also stops when attaching alone
has taken 60 s). Peak memory is measured at N when attaching is
quick, otherwise at 5,000 rows and scaled linearly (memory per instance is constant).
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transitions import Machine

from reprisals.protocol import SPEC_KEY, build_engine
from tests.bench.common import fmt_int, fmt_ratio, table
from tests.factories import cipher
from workflow.engine import _Model
from workflow.spec import WorkflowSpec

TIME_LIMIT_S = 60.0  # above this predicted time at full size, measure smaller and extrapolate
FULL_MEMORY_LIMIT_S = 5.0  # attaching slower than this: the (slower) tracemalloc pass runs on MEMORY_SAMPLE rows
MEMORY_SAMPLE = 5000
MEANINGFUL_PEAK_BYTES = 64 * 1024  # below this, (a)'s peak is transient noise, not a base for ratios

HAPPY_PATH = [("reported", "record_consent_and_risk", "triage"), ("triage", "refer", "referred"),
              ("referred", "record_response", "assessment"), ("assessment", "accept_response", "follow_up"),
              ("follow_up", "complete_follow_up", "closure_review"), ("closure_review", "close", "closed")]


class Row:
    """A loaded row as the machine sees it: an object with a ``stage`` attribute (and a ``__dict__``,
    which registering with a Machine needs)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage


def make_rows(n: int) -> tuple[list[Row], list[str], list[str]]:
    steps = [HAPPY_PATH[i % len(HAPPY_PATH)] for i in range(n)]
    return [Row(s) for s, _, _ in steps], [t for _, t, _ in steps], [d for _, _, d in steps]


def machine_kwargs(spec: WorkflowSpec) -> dict[str, Any]:
    """The states and transitions exactly as ``Engine.register`` gives them to its Machine."""
    return {
        "states": list(spec.stages),
        "transitions": [{"trigger": t.name, "source": list(t.sources), "dest": t.dest}
                        for t in spec.triggers.values()],
        "auto_transitions": False,
        "model_attribute": "stage",
    }


# Each approach: new() -> a handle kept alive; attach(rows, handle); fire(rows, triggers, handle).
New = Callable[[], Any]
Attach = Callable[[list[Row], Any], None]
Fire = Callable[[list[Row], list[str], Any], None]


@dataclass(frozen=True)
class Approach:
    label: str
    new: New
    attach: Attach
    fire: Fire


def approaches(spec: WorkflowSpec, shared: Machine) -> dict[str, Approach]:
    kwargs = machine_kwargs(spec)
    events = shared.events

    def a_fire(rows: list[Row], triggers: list[str], _handle: Any) -> None:
        for row, trigger in zip(rows, triggers, strict=True):
            model = _Model(row.stage)  # as Engine.fire does: a throw-away model for one trigger
            events[trigger].trigger(model)
            row.stage = model.stage

    def b_attach(rows: list[Row], machines: list[Machine]) -> None:
        machines.extend(Machine(model=r, initial=r.stage, **kwargs) for r in rows)

    def c_attach(rows: list[Row], machine: Machine) -> None:
        for r in rows:
            machine.add_model(r, initial=r.stage)

    def method_fire(rows: list[Row], triggers: list[str], _handle: Any) -> None:
        for row, trigger in zip(rows, triggers, strict=True):
            getattr(row, trigger)()

    return {
        # (a) attaches nothing: the machine never sees the row itself.
        "a": Approach("(a) ours: one Machine per spec, events[name].trigger(model)", lambda: None,
                      lambda rows, handle: None, a_fire),
        "b": Approach("(b) a Machine per row", list, b_attach, method_fire),
        "c": Approach("(c) one shared Machine, add_model",
                      lambda: Machine(model=None, initial=spec.initial, **kwargs), c_attach, method_fire),
    }


# The trigger that leaves each stage, round the loop closed -> reopen -> triage, so rows can fire again.
NEXT = {stage: trigger for stage, trigger, _ in HAPPY_PATH} | {"closed": "reopen"}
EXTRA_PASSES = 3  # further transitions per row, for a steadier time per transition (the best pass counts)
CHUNK = 1000
FIT_FROM = 10_000  # rows attached before the fit may stop an approach


@dataclass
class Sample:
    target: int  # rows asked for
    n: int  # rows attached (fewer than target when stopped)
    attach_s: float  # for the n rows
    fire_s: float  # the first transition of each of the n rows
    best_pass_s: float  # the fastest pass over the n rows, for the time per transition
    checkpoints: list[tuple[int, float]]  # (rows attached, elapsed s)
    predicted_s: float | None = None  # attach + fire at target, from the fit (when stopped or checked)
    peak_bytes: int | None = None

    @property
    def stopped(self) -> bool:
        return self.n < self.target


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares t = a*n + b*n^2 through the origin, with b >= 0."""
    s2 = sum(n**2 for n, _ in points)
    s3 = sum(n**3 for n, _ in points)
    s4 = sum(n**4 for n, _ in points)
    t1 = sum(n * t for n, t in points)
    t2 = sum(n * n * t for n, t in points)
    det = s2 * s4 - s3 * s3
    b = (s2 * t2 - s3 * t1) / det if det else 0.0
    if b <= 0:
        return t1 / s2, 0.0
    return (t1 - b * s3) / s2, b


def measure(approach: Approach, n: int, *, memory: bool, limit_s: float | None = None) -> Sample:
    rows, triggers, dests = make_rows(n)
    gc.collect()
    if memory:
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
    checkpoints: list[tuple[int, float]] = []
    predicted = None
    t0 = time.perf_counter()
    handle = approach.new()
    done = 0
    while done < n:
        approach.attach(rows[done:done + CHUNK], handle)
        done = min(done + CHUNK, n)
        checkpoints.append((done, time.perf_counter() - t0))
        if limit_s is not None and done < n and (done >= FIT_FROM or checkpoints[-1][1] > limit_s):
            a, b = fit(checkpoints)
            predicted = a * n + b * n * n
            if predicted > limit_s or checkpoints[-1][1] > limit_s:  # the second: never past the limit
                break
    t1 = time.perf_counter()
    if done < n:
        rows, triggers, dests = rows[:done], triggers[:done], dests[:done]
    approach.fire(rows, triggers, handle)
    t2 = time.perf_counter()
    peak = None
    if memory:
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    if [r.stage for r in rows] != dests:
        raise AssertionError("a row did not reach the expected stage")
    best = t2 - t1
    for _ in range(0 if memory else EXTRA_PASSES):
        triggers = [NEXT[r.stage] for r in rows]
        p0 = time.perf_counter()
        approach.fire(rows, triggers, handle)
        best = min(best, time.perf_counter() - p0)
    if done < n and predicted is not None:
        predicted += (t2 - t1) / done * n
    del handle, rows
    gc.collect()
    return Sample(n, done, t1 - t0, t2 - t1, best, checkpoints, predicted, peak)


def run(n: int, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    engine = build_engine(cipher=cipher())
    spec = engine.spec(SPEC_KEY)
    t0 = time.perf_counter()  # what (a) pays once per spec version and process
    Machine(model=None, initial=spec.initial, **machine_kwargs(spec))
    build_s = time.perf_counter() - t0
    shared = engine.machine(SPEC_KEY, spec.version)
    out: dict[str, Any] = {"instances": n, "machine_build_s": build_s, "time_limit_s": TIME_LIMIT_S,
                           "approaches": {}}
    all_approaches = approaches(spec, shared)
    measure(all_approaches["a"], 1000, memory=False)  # warm-up
    for key, approach in all_approaches.items():
        timing = measure(approach, n, memory=False, limit_s=TIME_LIMIT_S)
        k = timing.n
        entry: dict[str, Any] = {
            "label": approach.label, "time_measured_at": k, "time_extrapolated": timing.stopped,
            "predicted_s": timing.predicted_s, "checkpoints": timing.checkpoints[::5],
            # Stopped: the measured part scaled linearly, a lower bound (attaching grows faster than n).
            "attach_s": timing.attach_s / k * n, "fire_s": timing.fire_s / k * n,
            "us_per_transition": 1e6 * timing.best_pass_s / k,
        }
        entry["total_s"] = entry["attach_s"] + entry["fire_s"]
        if timing.stopped:
            log(f"  ({key}) stopped at {fmt_int(k)} rows after {timing.attach_s:.1f} s: the fit predicts "
                f"{timing.predicted_s:.0f} s at {fmt_int(n)} (> {TIME_LIMIT_S:.0f} s)")
        else:
            log(f"  ({key}) {fmt_int(n)}: attach {timing.attach_s:.2f} s, fire {timing.fire_s:.2f} s")
        m_n = n if timing.attach_s <= FULL_MEMORY_LIMIT_S and not timing.stopped else min(n, MEMORY_SAMPLE)
        mem = measure(approach, m_n, memory=True)
        assert mem.peak_bytes is not None
        entry["peak_bytes"] = round(mem.peak_bytes / m_n * n)
        entry["bytes_per_instance"] = mem.peak_bytes / m_n
        entry["memory_measured_at"] = m_n
        entry["memory_extrapolated"] = m_n < n
        log(f"  ({key}) peak memory {entry['peak_bytes'] / 1e6:.1f} MB"
            + (f" (measured at {fmt_int(m_n)}, scaled)" if m_n < n else ""))
        out["approaches"][key] = entry
    base = out["approaches"]["a"]
    for entry in out["approaches"].values():
        entry["ratio_total"] = entry["total_s"] / base["total_s"]
        entry["ratio_us_per_transition"] = entry["us_per_transition"] / base["us_per_transition"]
        entry["ratio_memory"] = entry["peak_bytes"] / max(base["peak_bytes"], 1)
        if entry["predicted_s"] is not None and entry["time_extrapolated"]:
            entry["ratio_predicted"] = entry["predicted_s"] / base["total_s"]
    return out


def render(results: dict[str, Any]) -> str:
    n = results["instances"]
    rows = []
    notes = []
    base = results["approaches"]["a"]
    base_kept = base["peak_bytes"] >= MEANINGFUL_PEAK_BYTES
    if not base_kept:
        notes.append(f"  memory: (a) keeps nothing per instance; its peak ({base['peak_bytes']:,} bytes) is transient "
                     "(a throw-away model and event per firing), so ratios against it mean nothing: see B/instance")
    for key, e in results["approaches"].items():
        mark = ""
        if e["time_extrapolated"] or e["memory_extrapolated"]:
            mark = " *"
            what = []
            if e["time_extrapolated"]:
                what.append(f"NOT run to {fmt_int(n)}: stopped at {fmt_int(e['time_measured_at'])} rows, where the "
                            f"fit predicted {e['predicted_s']:.0f} s at {fmt_int(n)} (> {results['time_limit_s']:.0f} "
                            f"s, i.e. {e['ratio_predicted']:.0f}x (a)); shown: the {fmt_int(e['time_measured_at'])} "
                            "measured scaled linearly, a lower bound")
            else:
                what.append(f"time measured at {fmt_int(n)}")
            if e["memory_extrapolated"]:
                what.append(f"peak memory measured at {fmt_int(e['memory_measured_at'])} rows and scaled linearly")
            notes.append(f"  * {key}: " + "; ".join(what))
        at_least = ">= " if e["time_extrapolated"] else ""
        rows.append((e["label"] + mark, f"{at_least}{e['attach_s']:.2f}", f"{e['fire_s']:.2f}",
                     f"{at_least}{e['total_s']:.2f}", f"{e['us_per_transition']:.1f}", f"{e['peak_bytes'] / 1e6:.2f}",
                     fmt_int(e["bytes_per_instance"]), at_least + fmt_ratio(e["ratio_total"]),
                     fmt_ratio(e["ratio_us_per_transition"]),
                     fmt_ratio(e["ratio_memory"]) if base_kept else "n/a"))
    title = (f"2. Machine cost: {fmt_int(n)} in-memory instances, attach + one transition each (sanctions spec); "
             "us/transition is the best of 4 passes")
    out = table(["approach", "attach s", "fire s", "total s", "us/transition", "peak MB", "B/instance",
                 "time vs (a)", "us vs (a)", "memory vs (a)"], rows, title=title)
    out += (f"\n  (one Machine for the spec builds in {1000 * results['machine_build_s']:.1f} ms; "
            "(a) pays that once per spec version and process)")
    if notes:
        out += "\n" + "\n".join(notes)
    return out
