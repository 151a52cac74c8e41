"""History is append-only in the database, and the verifier finds what a superuser did anyway.

Each tampering case builds a scene of three instances (A, B, C, born in that order, four events
each), tampers with B (or with the ledger) the way a database superuser can, after switching the
append-only triggers off, and expects exactly the findings that tampering must produce: what, which
instance, which event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import delete, insert, select, update

from tests.conftest import Database
from tests.workflow.errand import MANAGER, NOW, errand_engine, start_errand
from workflow.engine import Engine
from workflow.history import event_hash, verify, verify_instance
from workflow.models import HistoryEvent, LedgerEntry, WorkflowInstance

HISTORY = HistoryEvent.__table__
LEDGER = LedgerEntry.__table__
INSTANCES = WorkflowInstance.__table__
EVENTS_EACH = 4  # created, submit, two notes


@dataclass
class Scene:
    database: Database
    ids: dict[str, int]  # "A", "B", "C" -> instance id

    def execute(self, *statements: sa.Executable) -> None:
        with self.database.engine.begin() as conn:
            for stmt in statements:
                result = conn.execute(stmt)
                if isinstance(stmt, (sa.Update, sa.Delete)):
                    assert result.rowcount, f"tampering touched no row: {stmt}"

    def events(self, name: str) -> list[HistoryEvent]:
        with self.database.session() as s:
            return list(s.scalars(select(HistoryEvent).where(HistoryEvent.instance_id == self.ids[name])
                                  .order_by(HistoryEvent.seq)))

    def of(self, name: str, seq: int) -> sa.ColumnElement[bool]:
        return sa.and_(HISTORY.c.instance_id == self.ids[name], HISTORY.c.seq == seq)


def make_scene(database: Database, engine: Engine) -> Scene:
    return Scene(database, {name: start_errand(database, engine, "submitted", notes=2) for name in "ABC"})


@pytest.fixture
def scene(database: Database) -> Scene:
    return make_scene(database, errand_engine())


def findings(database: Database) -> set[tuple[str, int | None, int | None]]:
    with database.session() as s:
        report = verify(s)
    assert report.ok is (not report.findings)
    for finding in report.findings:
        assert finding.message and str(finding) == finding.message
    return {(f.what, f.instance_id, f.seq) for f in report.findings}


def _row(event: HistoryEvent) -> dict[str, object]:
    return {c.key: getattr(event, c.key) for c in HistoryEvent.__mapper__.column_attrs if c.key != "id"}


def _forge(template: HistoryEvent, **changes: object) -> dict[str, object]:
    """A well-formed event: its hash recomputed over its (changed) content, as an insider would."""
    forged = HistoryEvent(**{**_row(template), **changes})
    forged.hash = event_hash(forged)
    return _row(forged)


# -- an untouched database ---------------------------------------------------------------------


def test_report_ok_with_counts_when_nothing_was_touched(scene: Scene) -> None:
    with scene.database.session() as s:
        report = verify(s)

    assert report.ok and report.findings == []
    assert (report.instances, report.events) == (3, 3 * EVENTS_EACH)


def test_report_ok_when_database_is_empty(database: Database) -> None:
    with database.session() as s:
        report = verify(s)

    assert report.ok and (report.instances, report.events) == (0, 0)


def test_report_ok_after_many_moves_and_notes_when_all_went_through_the_engine(database: Database) -> None:
    engine = errand_engine()
    instance_id = start_errand(database, engine, "approved", notes=3)
    with database.session() as s:
        instance = s.get(WorkflowInstance, instance_id)
        assert instance is not None
        engine.fire(s, instance, "close", MANAGER, None, NOW)
        s.commit()

    with database.session() as s:
        assert verify(s).ok


# -- tampering, one way at a time ---------------------------------------------------------------


def _edit_data(sc: Scene) -> None:
    sc.execute(update(HISTORY).where(sc.of("B", 3)).values(data={"n": 99}))


def _edit_actor(sc: Scene) -> None:
    sc.execute(update(HISTORY).where(sc.of("B", 2)).values(actor_id="someone-else"))


def _edit_time(sc: Scene) -> None:
    sc.execute(update(HISTORY).where(sc.of("B", 2)).values(at=NOW - timedelta(days=3)))


def _delete_middle(sc: Scene) -> None:
    sc.execute(delete(HISTORY).where(sc.of("B", 2)))


def _delete_last(sc: Scene) -> None:
    sc.execute(delete(HISTORY).where(sc.of("B", EVENTS_EACH)))


def _append_forged(sc: Scene) -> None:
    last = sc.events("B")[-1]
    sc.execute(insert(HISTORY).values(**_forge(
        last, seq=last.seq + 1, kind="transition", trigger="approve", from_stage="submitted",
        to_stage="approved", actor_id="manager-1", data={"fields": {"amount": 5}}, prev_hash=last.hash)))


def _replace_middle(sc: Scene) -> None:
    second, third = sc.events("B")[1:3]
    sc.execute(delete(HISTORY).where(sc.of("B", 3)),
               insert(HISTORY).values(**_forge(third, data={"n": 99}, prev_hash=second.hash)))


def _swap_seqs(sc: Scene) -> None:
    # Through a free number: (instance_id, seq) is unique.
    sc.execute(update(HISTORY).where(sc.of("B", 2)).values(seq=-1),
               update(HISTORY).where(sc.of("B", 3)).values(seq=2),
               update(HISTORY).where(sc.of("B", -1)).values(seq=3))


def _delete_whole_history(sc: Scene) -> None:
    sc.execute(delete(HISTORY).where(HISTORY.c.instance_id == sc.ids["B"]))


def _delete_history_and_instance(sc: Scene) -> None:
    sc.execute(delete(HISTORY).where(HISTORY.c.instance_id == sc.ids["B"]),
               delete(INSTANCES).where(INSTANCES.c.id == sc.ids["B"]))


def _rewrite_whole_chain(sc: Scene) -> None:
    """Edit the first event and recompute every hash after it, head included: only the ledger,
    which recorded the first event's hash at birth, can tell."""
    prev = None
    statements: list[sa.Executable] = []
    for ev in sc.events("B"):
        changes: dict[str, object] = {"actor_id": "someone-else"} if ev.seq == 1 else {}
        if prev is not None:
            changes["prev_hash"] = prev
        row = _forge(ev, **changes)
        statements.append(update(HISTORY).where(HISTORY.c.id == ev.id).values(**row))
        prev = row["hash"]
    statements.append(update(INSTANCES).where(INSTANCES.c.id == sc.ids["B"]).values(head_hash=prev))
    sc.execute(*statements)


def _delete_ledger_entry(sc: Scene) -> None:
    sc.execute(delete(LEDGER).where(LEDGER.c.instance_id == sc.ids["B"]))


def _delete_last_ledger_entry(sc: Scene) -> None:
    sc.execute(delete(LEDGER).where(LEDGER.c.instance_id == sc.ids["C"]))


def _edit_ledger_entry(sc: Scene) -> None:
    sc.execute(update(LEDGER).where(LEDGER.c.instance_id == sc.ids["B"]).values(genesis_hash="0" * 64))


def _move_head(sc: Scene) -> None:
    # wf_instances is not append-only: no superuser needed for this one.
    sc.execute(update(INSTANCES).where(INSTANCES.c.id == sc.ids["B"]).values(head_seq=EVENTS_EACH - 1))


def _set_stage(sc: Scene) -> None:
    # Skipping a step, as a careless script might: no history says the instance was approved.
    sc.execute(update(INSTANCES).where(INSTANCES.c.id == sc.ids["B"]).values(stage="approved"))


B, C = "B", "C"
Expected = set[tuple[str, str | None, int | None]]  # (what, "B" or "C" or None, seq)

# Tampering that concerns one instance only: the findings name B and no other.
ONE_INSTANCE: list[tuple[str, Callable[[Scene], None], Expected]] = [
    ("event-data-edited", _edit_data, {("edited", B, 3)}),
    ("event-actor-edited", _edit_actor, {("edited", B, 2)}),
    ("event-time-edited", _edit_time, {("edited", B, 2)}),
    # Event 2 was the move to `submitted`: without it the history ends at `drafted`.
    ("middle-event-deleted", _delete_middle, {("missing", B, 2), ("broken-link", B, 3), ("stage-mismatch", B, None)}),
    ("last-event-deleted", _delete_last, {("head-mismatch", B, None)}),
    ("forged-event-appended", _append_forged, {("head-mismatch", B, None), ("stage-mismatch", B, None)}),
    ("middle-event-replaced", _replace_middle, {("broken-link", B, 4)}),
    ("two-events-swapped", _swap_seqs,
     {("edited", B, 2), ("broken-link", B, 2), ("edited", B, 3), ("broken-link", B, 3), ("broken-link", B, 4)}),
    ("whole-history-deleted", _delete_whole_history, {("history-deleted", B, None)}),
    ("history-and-instance-deleted", _delete_history_and_instance, {("instance-deleted", B, None)}),
    ("whole-chain-rewritten", _rewrite_whole_chain, {("genesis-mismatch", B, 1)}),
    ("instance-head-moved", _move_head, {("head-mismatch", B, None)}),
    ("stage-set-outside-engine", _set_stage, {("stage-mismatch", B, None)}),
]

# Tampering with the ledger: its findings depend on the ledger's numbering, so a fresh database each.
LEDGER_TAMPERING: list[tuple[str, Callable[[Scene], None], Expected]] = [
    ("ledger-entry-deleted", _delete_ledger_entry,
     {("not-in-ledger", B, None), ("ledger-gap", None, 2), ("ledger-broken-link", C, 3)}),
    ("last-ledger-entry-deleted", _delete_last_ledger_entry,
     {("not-in-ledger", C, None), ("ledger-head-mismatch", None, None)}),
    ("ledger-entry-edited", _edit_ledger_entry, {("ledger-edited", B, 2), ("genesis-mismatch", B, 1)}),
]


def _resolve(expected: Expected, sc: Scene) -> set[tuple[str, int | None, int | None]]:
    return {(what, sc.ids[who] if who else None, seq) for what, who, seq in expected}


def test_exact_findings_naming_the_instance_when_its_history_is_tampered_with(database: Database) -> None:
    """Every case on a fresh scene of one database (a database per case would cost far more than the
    cases), judged by the findings it adds; every failing case reported by name."""
    engine = errand_engine()
    database.disable_append_only()
    failures: list[str] = []
    for name, tamper, expected in ONE_INSTANCE:
        sc = make_scene(database, engine)
        before = findings(database)
        tamper(sc)
        after = findings(database)
        if not before <= after or after - before != _resolve(expected, sc):
            failures.append(f"{name}: added {sorted(after - before, key=str)}, "
                            f"expected {sorted(_resolve(expected, sc), key=str)}")

    assert failures == []


@pytest.mark.parametrize(("tamper", "expected"), [t[1:] for t in LEDGER_TAMPERING],
                         ids=[t[0] for t in LEDGER_TAMPERING])
def test_exact_findings_naming_the_instance_when_the_ledger_is_tampered_with(
    scene: Scene, tamper: Callable[[Scene], None], expected: Expected
) -> None:
    assert findings(scene.database) == set()
    scene.database.disable_append_only()

    tamper(scene)

    assert findings(scene.database) == _resolve(expected, scene)


def test_only_the_tampered_instances_named_when_several_are_tampered_with(scene: Scene) -> None:
    scene.database.disable_append_only()
    _edit_data(scene)
    scene.execute(delete(HISTORY).where(scene.of("C", EVENTS_EACH)))

    found = findings(scene.database)

    assert found == {("edited", scene.ids["B"], 3), ("head-mismatch", scene.ids["C"], None)}
    assert scene.ids["A"] not in {instance_id for _, instance_id, _ in found}


WHOLE_LEDGER = {"ledger-gap", "ledger-broken-link", "ledger-head-mismatch"}  # not about one instance


def test_one_instance_check_finds_what_the_full_check_finds_for_it_and_nothing_for_the_others(
        database: Database) -> None:
    """``verify_instance`` (the case page's check) against ``verify`` for every tampering of B."""
    engine = errand_engine()
    database.disable_append_only()
    failures: list[str] = []
    for name, tamper, _expected in [*ONE_INSTANCE, LEDGER_TAMPERING[0], LEDGER_TAMPERING[2]]:
        sc = make_scene(database, engine)
        tamper(sc)
        with database.session() as s:
            full = {(f.what, f.seq) for f in verify(s).findings
                    if f.instance_id == sc.ids["B"] and f.what not in WHOLE_LEDGER}
            one = verify_instance(s, sc.ids["B"])
            untouched = verify_instance(s, sc.ids["A"])
        found = {(f.what, f.seq) for f in one.findings}
        if not full or found != full:
            failures.append(f"{name}: one-instance {sorted(found, key=str)}, full {sorted(full, key=str)}")
        if not untouched.ok or untouched.events != EVENTS_EACH:
            failures.append(f"{name}: A, untouched, reported {untouched.findings} over {untouched.events} events")

    assert failures == []


def test_findings_read_as_sentences_when_shown_to_people(scene: Scene) -> None:
    scene.database.disable_append_only()
    _delete_middle(scene)

    with scene.database.session() as s:
        messages = sorted(str(f) for f in verify(s).findings)

    b = scene.ids["B"]
    assert messages[0] == f"instance {b}: event 3 (id {scene.events('B')[1].id}) does not follow its predecessor " \
                          "(inserted, deleted or reordered)"
    assert messages[1] == f"instance {b}: events 2..2 are missing (deleted)"


# -- append-only in the database itself ---------------------------------------------------------

REFUSED = [
    ("update-history", "UPDATE wf_history SET kind = 'edited'"),
    ("delete-history", "DELETE FROM wf_history WHERE seq = 2"),
    ("update-ledger", "UPDATE wf_ledger SET genesis_hash = 'x'"),
    ("delete-ledger", "DELETE FROM wf_ledger"),
]


def _counts(database: Database) -> tuple[int, int, str]:
    (row,) = database.raw("SELECT (SELECT count(*) FROM wf_history), (SELECT count(*) FROM wf_ledger), "
                          "(SELECT min(kind) FROM wf_history)")
    return row[0], row[1], row[2]


def test_database_refuses_when_history_would_be_changed(scene: Scene) -> None:
    before = _counts(scene.database)

    for name, sql in REFUSED:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            scene.database.raw(sql)
        assert _counts(scene.database) == before, name

    assert findings(scene.database) == set()


@pytest.mark.postgresql_only  # SQLite has no TRUNCATE; its DELETE without WHERE is refused above
def test_database_refuses_when_history_would_be_truncated(scene: Scene) -> None:
    before = _counts(scene.database)

    for table in ("wf_history", "wf_ledger"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            scene.database.raw(f"TRUNCATE {table} CASCADE")
        assert _counts(scene.database) == before, table


def test_orm_flush_refused_when_a_loaded_event_is_changed(scene: Scene) -> None:
    with scene.database.session() as s:
        event = s.scalars(select(HistoryEvent).where(HistoryEvent.seq == 2)).first()
        assert event is not None
        event.data = {"fields": {"summary": "rewritten"}}
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            s.flush()
        s.rollback()

    assert findings(scene.database) == set()


def test_history_can_be_changed_when_a_superuser_drops_the_triggers(scene: Scene) -> None:
    # The control for the tests above: without the triggers the same statements go through.
    scene.database.disable_append_only()

    scene.database.raw("UPDATE wf_history SET kind = 'edited' WHERE seq = 3")
    scene.database.raw("DELETE FROM wf_ledger")

    assert _counts(scene.database)[1] == 0
    assert ("edited", scene.ids["A"], 3) in findings(scene.database)


def test_one_instance_check_reads_the_instance_fresh_so_a_move_made_meanwhile_is_not_tampering(
        database: Database) -> None:
    """A page loads a case, someone else then acts on it, and the page checks the history: the check must
    compare the events with the instance as it is now, not as the page loaded it."""
    engine = errand_engine()
    instance_id = start_errand(database, engine, "submitted")
    page = sa.orm.sessionmaker(database.engine, expire_on_commit=False)()
    try:
        loaded = page.get(WorkflowInstance, instance_id)
        assert loaded is not None
        page.commit()  # the request goes on with what it loaded (SQLite: other writers may now commit)
        with database.session() as other:
            inst = other.get(WorkflowInstance, instance_id)
            assert inst is not None
            engine.append_event(other, inst, "note", MANAGER.id, NOW + timedelta(days=1), {"n": 99})
            other.commit()

        report = verify_instance(page, instance_id)

        assert report.ok, report.findings
        assert report.events == EVENTS_EACH - 1  # created, submit and the new note
    finally:
        page.close()

