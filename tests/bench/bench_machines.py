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
(b) and (c) are first measured at two smaller sizes (1/20 and 1/10 of N, at least 5,000 and
10,000 up to N/4 and N/2). When the time predicted from them at N is above 60 s, the result is
extrapolated instead of measured (attach time fitted with a*n + b*n^2, since ``add_model`` scans a
list and a Machine per row loads the cyclic garbage collector; firing linearly), and the output
says so, with the linear scaling as a lower bound. Peak memory is measured at N when the predicted
time is small, otherwise at the smaller probe size and scaled linearly.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from transitions import Machine

from reprisals.protocol import SPEC_KEY, build_engine
from tests.bench.common import fmt_int, fmt_ratio, table
from workflow.engine import _Model
from workflow.spec import WorkflowSpec

TIME_LIMIT_S = 60.0  # above this predicted time at full size, measure smaller and extrapolate
FULL_MEMORY_LIMIT_S = 10.0  # above this predicted time, the (slower) tracemalloc pass runs at the probe size only
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


# Each approach: attach(rows) -> handle kept alive; fire(rows, triggers, handle).
Attach = Callable[[list[Row]], Any]
Fire = Callable[[list[Row], list[str], Any], None]


def approaches(spec: WorkflowSpec, shared: Machine) -> dict[str, tuple[str, Attach, Fire]]:
    kwargs = machine_kwargs(spec)
    events = shared.events

    def a_attach(rows: list[Row]) -> Any:
        return None  # nothing to attach: the machine never sees the row itself

    def a_fire(rows: list[Row], triggers: list[str], _handle: Any) -> None:
        for row, trigger in zip(rows, triggers, strict=True):
            model = _Model(row.stage)  # as Engine.fire does: a throw-away model for one trigger
            events[trigger].trigger(model)
            row.stage = model.stage

    def b_attach(rows: list[Row]) -> Any:
        return [Machine(model=r, initial=r.stage, **kwargs) for r in rows]

    def c_attach(rows: list[Row]) -> Any:
        machine = Machine(model=None, initial=spec.initial, **kwargs)
        for r in rows:
            machine.add_model(r, initial=r.stage)
        return machine

    def method_fire(rows: list[Row], triggers: list[str], _handle: Any) -> None:
        for row, trigger in zip(rows, triggers, strict=True):
            getattr(row, trigger)()

    return {
        "a": ("(a) ours: one Machine per spec, events[name].trigger(model), nothing registered", a_attach, a_fire),
        "b": ("(b) a Machine per row", b_attach, method_fire),
        "c": ("(c) one shared Machine, add_model", c_attach, method_fire),
    }


# The trigger that leaves each stage, round the loop closed -> reopen -> triage, so rows can fire again.
NEXT = {stage: trigger for stage, trigger, _ in HAPPY_PATH} | {"closed": "reopen"}
EXTRA_PASSES = 3  # further transitions per row, for a steadier time per transition (the best pass counts)


@dataclass
class Sample:
    n: int
    attach_s: float
    fire_s: float  # the first transition of every row
    best_pass_s: float  # the fastest of the passes (first and extra), for the time per transition
    peak_bytes: int | None = None


def measure(attach: Attach, fire: Fire, n: int, *, memory: bool) -> Sample:
    rows, triggers, dests = make_rows(n)
    gc.collect()
    if memory:
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    handle = attach(rows)
    t1 = time.perf_counter()
    fire(rows, triggers, handle)
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
        fire(rows, triggers, handle)
        best = min(best, time.perf_counter() - p0)
    del handle, rows
    gc.collect()
    return Sample(n, t1 - t0, t2 - t1, best, peak)


def _fit_attach(s1: Sample, s2: Sample, n: int) -> float:
    """Attach time at n from two samples, fitted with a*n + b*n^2 (b >= 0)."""
    b = (s2.attach_s / s2.n - s1.attach_s / s1.n) / (s2.n - s1.n)
    if b <= 0:
        return s2.attach_s / s2.n * n
    a = s1.attach_s / s1.n - b * s1.n
    return max(a, 0.0) * n + b * n * n


def run(n: int, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    engine = build_engine()
    spec = engine.spec(SPEC_KEY)
    t0 = time.perf_counter()  # what (a) pays once per spec version and process
    Machine(model=None, initial=spec.initial, **machine_kwargs(spec))
    build_s = time.perf_counter() - t0
    shared = engine.machine(SPEC_KEY, spec.version)
    out: dict[str, Any] = {"instances": n, "machine_build_s": build_s, "approaches": {}}
    measure(*approaches(spec, shared)["a"][1:], 1000, memory=False)  # warm-up
    for key, (label, attach, fire) in approaches(spec, shared).items():
        entry: dict[str, Any] = {"label": label}
        if key == "a":
            predicted = None
            probes: list[Sample] = []
        else:
            small = min(max(n // 20, 5000), n // 4)  # big enough for a stable fit: 5,000 and 10,000
            probes = [measure(attach, fire, small, memory=False), measure(attach, fire, 2 * small, memory=False)]
            for p in probes:
                log(f"  ({key}) probe {fmt_int(p.n)}: attach {p.attach_s:.2f} s, fire {p.fire_s:.2f} s")
            predicted = _fit_attach(probes[0], probes[1], n) + probes[1].fire_s / probes[1].n * n
            log(f"  ({key}) predicted at {fmt_int(n)}: {predicted:.1f} s")
        if predicted is None or predicted <= TIME_LIMIT_S:
            timing = measure(attach, fire, n, memory=False)
            attach_s, fire_s, us = timing.attach_s, timing.fire_s, 1e6 * timing.best_pass_s / n
            entry["time_measured_at"] = n
            entry["time_extrapolated"] = False
            log(f"  ({key}) {fmt_int(n)}: attach {attach_s:.2f} s, fire {fire_s:.2f} s")
        else:
            s1, s2 = probes
            attach_s = _fit_attach(s1, s2, n)
            fire_s = s2.fire_s / s2.n * n
            us = 1e6 * s2.best_pass_s / s2.n
            entry["time_measured_at"] = s2.n
            entry["time_extrapolated"] = True
            entry["total_linear_s"] = (s2.attach_s + s2.fire_s) / s2.n * n  # a lower bound
        if predicted is None or predicted <= FULL_MEMORY_LIMIT_S:
            mem = measure(attach, fire, n, memory=True)
            assert mem.peak_bytes is not None
            peak = mem.peak_bytes
            entry["memory_measured_at"] = n
            entry["memory_extrapolated"] = False
        else:
            m_n = probes[0].n  # memory per instance is constant (checked: 5,000 and 10,000 agree to 0.1%)
            mem = measure(attach, fire, m_n, memory=True)
            assert mem.peak_bytes is not None
            peak = round(mem.peak_bytes / m_n * n)
            entry["memory_measured_at"] = m_n
            entry["memory_extrapolated"] = True
        log(f"  ({key}) peak memory {peak / 1e6:.1f} MB"
            + (f" (extrapolated from {fmt_int(entry['memory_measured_at'])})" if entry["memory_extrapolated"] else ""))
        entry.update({"attach_s": attach_s, "fire_s": fire_s, "total_s": attach_s + fire_s,
                      "us_per_transition": us, "peak_bytes": peak, "bytes_per_instance": peak / n,
                      "predicted_s": predicted, "probes": [asdict(p) for p in probes]})
        out["approaches"][key] = entry
    base = out["approaches"]["a"]
    for entry in out["approaches"].values():
        entry["ratio_total"] = entry["total_s"] / base["total_s"]
        entry["ratio_us_per_transition"] = entry["us_per_transition"] / base["us_per_transition"]
        entry["ratio_memory"] = entry["peak_bytes"] / max(base["peak_bytes"], 1)
    return out


def render(results: dict[str, Any]) -> str:
    n = results["instances"]
    rows = []
    notes = []
    base = results["approaches"]["a"]
    base_kept = base["peak_bytes"] >= MEANINGFUL_PEAK_BYTES
    if not base_kept:
        notes.append(f"  memory: (a) keeps nothing per instance; its peak ({base['peak_bytes']:,} bytes) is one "
                     "throw-away model and event, so memory ratios against it are meaningless (see B/instance)")
    for key, e in results["approaches"].items():
        mark = ""
        if e["time_extrapolated"] or e["memory_extrapolated"]:
            mark = " *"
            what = []
            if e["time_extrapolated"]:
                p1, p2 = e["probes"]
                what.append(f"time extrapolated from {fmt_int(p1['n'])} and {fmt_int(p2['n'])} instances "
                            f"(measured: {p1['attach_s'] + p1['fire_s']:.2f} s and "
                            f"{p2['attach_s'] + p2['fire_s']:.2f} s; "
                            f"predicted {e['predicted_s']:.0f} s > {TIME_LIMIT_S:.0f} s at {fmt_int(n)}); scaled "
                            f"linearly instead (a lower bound) {e['total_linear_s']:.0f} s, "
                            f"{e['total_linear_s'] / base['total_s']:.0f}x (a)")
            elif e["predicted_s"] is not None:
                what.append(f"time measured at {fmt_int(n)} (predicted {e['predicted_s']:.0f} s)")
            if e["memory_extrapolated"]:
                what.append(f"peak memory measured at {fmt_int(e['memory_measured_at'])} and scaled linearly")
            notes.append(f"  * {key}: " + "; ".join(what))
        rows.append((e["label"] + mark, f"{e['attach_s']:.2f}", f"{e['fire_s']:.2f}", f"{e['total_s']:.2f}",
                     f"{e['us_per_transition']:.1f}", f"{e['peak_bytes'] / 1e6:.2f}", fmt_int(e["bytes_per_instance"]),
                     fmt_ratio(e["ratio_total"]), fmt_ratio(e["ratio_us_per_transition"]),
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
