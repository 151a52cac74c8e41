"""The scheduler, for real: APScheduler as configured by ``build_scheduler`` ticking the deadline
sweep and outbox delivery against a real database (and a daily digest at 08:00 UK time);
``reprisals scheduler`` and ``reprisals run --reload`` as real processes (catch-up at start, SIGTERM,
the reloader's parent starting nothing); and the ``deadlines`` commands run by hand.

Timers come from real cases opened through the services with the protocol engine: a case received
on 16 April 2025 has its "consent and risk recorded" deadline due at the end of the next working
day, long past whenever these tests run. Its overdue notice is urgent, so the e-mail copies go at
once whatever the time of day (non-urgent e-mail waits for working hours): each notice is two rows,
one to the person's in-app inbox and one by e-mail (the log channel, as configured by default).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from notifications.channels import InAppChannel, LogChannel
from notifications.models import OutboxMessage
from notifications.outbox import unread_count
from reprisals.config import load_settings
from reprisals.models import Role
from reprisals.runtime import Runtime
from tests.conftest import Database
from tests.factories import make_case, make_establishment, make_user
from tests.support.waiting import wait_for
from tests.web.conftest import Cli, assert_refused, base_env, clean_environ
from web.app import create_app
from web.scheduler import DELIVERY_JOB_ID, DIGEST_JOB_ID, SWEEP_JOB_ID, build_scheduler, start_in_process
from workflow.engine import Engine
from workflow.models import DeadlineRow, TimerRow

INT32_MAX_MS = 2**31 - 1  # what a 32-bit lateness column could hold (~24.8 days)

REPRISALS_BIN = Path(sys.executable).with_name("reprisals")
INTERVAL = "0.2"
DISPATCH_AT = datetime.fromisoformat("2025-05-07T09:00:00+01:00")
JOB_IDS = sorted([SWEEP_JOB_ID, DELIVERY_JOB_ID, DIGEST_JOB_ID])


# -- helpers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedCase:
    reference: str
    instance_id: int
    lead_email: str
    recipients: frozenset[str]  # user ids the overdue notice goes to: the assigned staff and the leads
    addresses: frozenset[str]  # their e-mail addresses (both have e-mail notifications on)

    def expected(self, template: str, status: str) -> set[tuple[str, str, str, str]]:
        """(template, channel, recipient, status): one in-app row per user id, one e-mail per address."""
        return ({(template, "inapp", r, status) for r in self.recipients}
                | {(template, "log", a, status) for a in self.addresses})


def open_case_at(database: Database, wf: Engine, *, received_at: str, now: datetime) -> OpenedCase:
    """A committed case at stage ``reported``, owned by IMB, assigned to a staff member."""
    with database.session() as s:
        lead = make_user(s, role=Role.LEAD, body="IMB")
        staff = make_user(s, role=Role.STAFF, body="IMB")
        case = make_case(s, wf, actor=lead, now=now, establishment=make_establishment(s),
                         received_at=received_at, assigned_user_id=staff.id)
        opened = OpenedCase(case.reference, case.instance_id, lead.email, frozenset({str(lead.id), str(staff.id)}),
                            frozenset({lead.email, staff.email}))
        s.commit()
    return opened


def open_overdue_case(database: Database, wf: Engine) -> OpenedCase:
    return open_case_at(database, wf, received_at="2025-04-16T10:00:00+01:00",
                        now=datetime(2025, 4, 16, 12, tzinfo=UTC))


def timers_of(database: Database, instance_id: int) -> list[sa.Row[Any]]:
    with database.session() as s:
        return list(s.execute(select(TimerRow.id, TimerRow.kind, TimerRow.status, TimerRow.fire_at, TimerRow.fired_at,
                                     TimerRow.fired_by, TimerRow.lateness_ms, TimerRow.generation)
                              .where(TimerRow.instance_id == instance_id).order_by(TimerRow.id)))


def deadlines_of(database: Database, instance_id: int) -> list[sa.Row[Any]]:
    with database.session() as s:
        return list(s.execute(select(DeadlineRow.id, DeadlineRow.name, DeadlineRow.status, DeadlineRow.due_at,
                                     DeadlineRow.generation, DeadlineRow.overdue_at)
                              .where(DeadlineRow.instance_id == instance_id).order_by(DeadlineRow.id)))


def messages_for(database: Database, reference: str) -> list[OutboxMessage]:
    with database.session() as s:
        return [m for m in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
                if m.context.get("reference") == reference]


def runtime_for(database: Database, tmp_path: Path) -> Runtime:
    env = {**base_env(database.url, tmp_path), "REPRISALS_SCHEDULER_INTERVAL": INTERVAL}
    return Runtime.from_settings(load_settings(env, dotenv=None))


def scheduler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "APScheduler"]


@pytest.fixture
def rt(database: Database, tmp_path: Path) -> Iterator[Runtime]:
    runtime = runtime_for(database, tmp_path)
    yield runtime
    runtime.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- build_scheduler --------------------------------------------------------------------------------


@pytest.mark.parametrize("blocking", [False, True], ids=["background", "blocking"])
def test_scheduler_has_explicit_defaults_and_three_fixed_jobs_when_built(tmp_path: Path, blocking: bool) -> None:
    settings = load_settings({**base_env(f"sqlite:///{tmp_path / 'unused.db'}", tmp_path),
                              "REPRISALS_SCHEDULER_INTERVAL": "7.5"}, dotenv=None)
    rt = Runtime.from_settings(settings)
    before = datetime.now(UTC)

    scheduler = build_scheduler(rt, blocking=blocking)

    assert isinstance(scheduler, BlockingScheduler if blocking else BackgroundScheduler)
    assert str(scheduler.timezone) == "UTC"
    # APScheduler's own defaults would be misfire_grace_time=1 (a tick 1 s late is skipped).
    assert scheduler._job_defaults == {"misfire_grace_time": None, "coalesce": True, "max_instances": 1}
    pending = scheduler._pending_jobs  # (job, job store alias, replace_existing) until started
    assert sorted(job.id for job, _, _ in pending) == JOB_IDS
    assert all(replace for _, _, replace in pending)  # registered at start-up, replacing any leftover
    jobs = {job.id: job for job, _, _ in pending}
    for job_id in (SWEEP_JOB_ID, DELIVERY_JOB_ID):
        job = jobs[job_id]
        assert isinstance(job.trigger, IntervalTrigger)
        assert job.trigger.interval == timedelta(seconds=7.5)
        assert before <= job.next_run_time <= datetime.now(UTC)  # the first run is immediate: catch-up
    assert_digest_at_8_london(jobs[DIGEST_JOB_ID].trigger)
    assert not hasattr(jobs[DIGEST_JOB_ID], "next_run_time")  # no catch-up run: only at the next 08:00
    rt.close()


def assert_digest_at_8_london(trigger: object) -> None:
    """A cron trigger at 08:00 Europe/London, every day (the job skips days that are not working days),
    in summer time and in winter."""
    assert isinstance(trigger, CronTrigger)
    assert str(trigger.timezone) == "Europe/London"
    summer = trigger.get_next_fire_time(None, datetime(2025, 4, 30, 7, 1, tzinfo=UTC))  # 08:01 BST
    winter = trigger.get_next_fire_time(None, datetime(2025, 12, 5, 7, 59, tzinfo=UTC))  # 07:59 GMT
    assert summer is not None and winter is not None
    assert summer.astimezone(UTC) == datetime(2025, 5, 1, 7, 0, tzinfo=UTC)  # 08:00 BST the next day
    assert winter.astimezone(UTC) == datetime(2025, 12, 5, 8, 0, tzinfo=UTC)  # 08:00 GMT the same day


def test_scheduler_keeps_jobs_in_memory_and_replaces_by_id_when_started_or_built_twice(rt: Runtime) -> None:
    first, second = build_scheduler(rt, blocking=False), build_scheduler(rt, blocking=False)
    first.start(paused=True)  # paused: no tick runs, nothing touches the database
    second.start(paused=True)
    try:
        for scheduler in (first, second):
            jobs = scheduler.get_jobs()
            assert sorted(j.id for j in jobs) == JOB_IDS  # three, not six
            for job in jobs:
                assert (job.misfire_grace_time, job.coalesce, job.max_instances) == (None, True, 1)
            # Each job's log lines say which it is (APScheduler names a job by its __qualname__).
            assert {j.id: j.name for j in jobs} == {SWEEP_JOB_ID: "run_sweep", DELIVERY_JOB_ID: "run_delivery",
                                                    DIGEST_JOB_ID: "run_digest"}
            digest = scheduler.get_job(DIGEST_JOB_ID)
            assert_digest_at_8_london(digest.trigger)
            local = digest.next_run_time.astimezone(ZoneInfo("Europe/London"))
            assert (local.hour, local.minute) == (8, 0)
            assert digest.next_run_time - datetime.now(UTC) <= timedelta(days=1, hours=1)
            # Nothing persistent: no job store that could hold a pickled callable across a deploy.
            assert list(scheduler._jobstores) == ["default"]
            assert type(scheduler._jobstores["default"]) is MemoryJobStore

        def other() -> None: ...

        first.add_job(other, "interval", seconds=60, id=SWEEP_JOB_ID, replace_existing=True)
        assert len(first.get_jobs()) == 3
        assert first.get_job(SWEEP_JOB_ID).func is other
    finally:
        first.shutdown(wait=False)
        second.shutdown(wait=False)


def test_background_scheduler_fires_due_timer_and_delivers_its_messages_when_running(
        database: Database, wf: Engine, rt: Runtime) -> None:
    case = open_overdue_case(database, wf)
    channel = LogChannel()
    scheduler = build_scheduler(rt, blocking=False, channels={"inapp": InAppChannel(), "log": channel})
    started = time.monotonic()
    scheduler.start()
    try:
        wait_for(lambda: {m.status for m in messages_for(database, case.reference)} == {"sent"}
                 and len(channel.sent) >= len(case.addresses), "the overdue notices to be delivered", timeout=15)
    finally:
        scheduler.shutdown(wait=True)
    assert time.monotonic() - started < 10

    (timer,) = timers_of(database, case.instance_id)
    assert timer.status == "fired"
    assert timer.fired_by.endswith(f":{os.getpid()}")
    assert deadlines_of(database, case.instance_id)[0].status == "overdue"
    messages = messages_for(database, case.reference)
    assert {(m.template, m.channel, m.recipient, m.status) for m in messages} == case.expected("overdue", "sent")
    assert len(messages) == 2 * len(case.recipients)
    assert all(m.urgent for m in messages)  # an overdue notice is urgent: its e-mail is not held back
    # (Filtered by subject: the 08:00 digest job could, on a rare run, add a digest of its own.)
    assert sorted(to for to, rendered in channel.sent if rendered.subject.startswith("OVERDUE: case ")) == sorted(
        case.addresses)
    with rt.sessions() as s:  # the in-app copies are in each person's inbox
        assert {r: unread_count(s, r) for r in case.recipients} == dict.fromkeys(case.recipients, 1)
    assert not scheduler_threads()


# -- start_in_process (reprisals run) -------------------------------------------------------------


def test_no_scheduler_starts_when_reloader_parent_runs(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)

    assert start_in_process(rt, reloader=True) is None
    assert not scheduler_threads()


@pytest.mark.parametrize(("reloader", "run_main"), [(True, "true"), (False, None)],
                         ids=["reloader-child", "no-reloader"])
def test_one_background_scheduler_starts_when_serving_process_runs(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch, reloader: bool, run_main: str | None) -> None:
    if run_main is None:
        monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    else:
        monkeypatch.setenv("WERKZEUG_RUN_MAIN", run_main)

    scheduler = start_in_process(rt, reloader=reloader)

    try:
        assert isinstance(scheduler, BackgroundScheduler)
        assert scheduler.running
        assert len(scheduler_threads()) == 1
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=True)
    assert not scheduler_threads()


def test_no_scheduler_starts_when_app_is_created_and_serves_requests(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    starts: list[BaseScheduler] = []
    real_start = BaseScheduler.start

    def record(self: BaseScheduler, *args: Any, **kwargs: Any) -> None:
        starts.append(self)
        real_start(self, *args, **kwargs)

    monkeypatch.setattr(BaseScheduler, "start", record)
    threads = set(threading.enumerate())

    app = create_app(runtime=rt)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/sign-in").status_code == 200
    assert client.get("/").status_code == 302  # to sign in

    assert starts == []
    assert not scheduler_threads()
    assert set(threading.enumerate()) == threads


def test_reloader_parent_serves_nothing_and_only_child_runs_the_scheduler_when_run_with_reload(
        database: Database, wf: Engine, tmp_path: Path) -> None:
    case = open_overdue_case(database, wf)
    env = {**clean_environ(), **base_env(database.url, tmp_path), "REPRISALS_SCHEDULER_INTERVAL": INTERVAL}
    out = tmp_path / "run.out"
    with out.open("w") as stdout:
        proc = subprocess.Popen([str(REPRISALS_BIN), "run", "--reload", "--port", str(free_port())], env=env,
                                cwd=tmp_path, stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: timers_of(database, case.instance_id)[0].status == "fired", "the child's sweep", 30)
        wait_for(lambda: out.read_text().count("serving on") == 2, "both processes to start", 10)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the reloader's child is in the same session
        proc.wait(timeout=15)

    lines = [line for line in out.read_text().splitlines() if line.startswith("serving on")]
    # The watching parent says it serves but runs no scheduler; the serving child runs exactly one.
    assert sorted(line.endswith("; deadline scheduler running in this process") for line in lines) == [False, True]
    (timer,) = timers_of(database, case.instance_id)
    assert not timer.fired_by.endswith(f":{proc.pid}")  # fired by the child, not the parent


# -- reprisals scheduler ----------------------------------------------------------------------------


def test_scheduler_process_catches_up_on_start_and_exits_0_promptly_when_sent_sigterm(
        database: Database, wf: Engine, tmp_path: Path) -> None:
    case = open_overdue_case(database, wf)
    env = {**clean_environ(), **base_env(database.url, tmp_path), "REPRISALS_SCHEDULER_INTERVAL": INTERVAL,
           "REPRISALS_LOG_LEVEL": "INFO"}
    log_file = tmp_path / "scheduler.log"
    with log_file.open("w") as log:
        proc = subprocess.Popen([str(REPRISALS_BIN), "scheduler"], env=env, cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        # In-app and by e-mail (the log channel): an overdue notice is urgent, so the e-mail is not
        # held until working hours, whenever this runs.
        wait_for(lambda: {(m.template, m.channel, m.recipient, m.status)
                          for m in messages_for(database, case.reference)} == case.expected("overdue", "sent"),
                 "the overdue notices to be sent", timeout=20)
        assert proc.poll() is None  # still running: it does not exit after the catch-up
        proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        code = proc.wait(timeout=10)
        stopped_in = time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    output = log_file.read_text()
    assert code == 0, output
    assert stopped_in < 3, stopped_in
    assert "Traceback" not in output
    assert f"scheduler {proc.pid} stopped" in output
    (timer,) = timers_of(database, case.instance_id)
    (deadline,) = deadlines_of(database, case.instance_id)
    assert timer.status == "fired" and timer.fired_by.endswith(f":{proc.pid}")
    assert deadline.status == "overdue"
    late = timer.fired_at - timer.fire_at
    assert late > timedelta(days=7)  # fired at start, weeks after it was due
    assert timer.lateness_ms == int(late.total_seconds() * 1000)
    messages = messages_for(database, case.reference)
    assert len(messages) == 2 * len(case.recipients)
    for message in messages:
        assert (message.template, message.urgent) == ("overdue", True)
        assert message.context["late_by_seconds"] == int(late.total_seconds())  # the message says how late
        assert message.context["late_text"]


# -- reprisals deadlines dispatch / list / extend ---------------------------------------------------


@pytest.fixture
def two_cases(database: Database, wf: Engine) -> tuple[OpenedCase, OpenedCase]:
    """One case whose deadline passed before DISPATCH_AT, and one due only after it."""
    before = open_overdue_case(database, wf)
    after = open_case_at(database, wf, received_at="2025-05-07T10:00:00+01:00",
                         now=datetime(2025, 5, 7, 12, tzinfo=UTC))
    assert deadlines_of(database, before.instance_id)[0].due_at < DISPATCH_AT
    assert deadlines_of(database, after.instance_id)[0].due_at > DISPATCH_AT
    return before, after


def test_dispatch_fires_only_what_was_due_by_then_and_nothing_twice_when_now_is_given(
        run: Cli, database: Database, two_cases: tuple[OpenedCase, OpenedCase]) -> None:
    due, not_yet = two_cases
    (deadline,) = deadlines_of(database, due.instance_id)
    late_by = (DISPATCH_AT - deadline.due_at).total_seconds()

    result = run("deadlines", "dispatch", "--now", "2025-05-07T09:00:00+01:00")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"sweep: 1 fired, 0 failed, 0 skipped; lateness max {late_by:.0f} s\n"
    (timer,) = timers_of(database, due.instance_id)
    assert (timer.status, timer.fired_at, timer.lateness_ms) == ("fired", DISPATCH_AT, late_by * 1000)
    assert deadlines_of(database, due.instance_id)[0].status == "overdue"
    assert [t.status for t in timers_of(database, not_yet.instance_id)] == ["pending"]
    assert deadlines_of(database, not_yet.instance_id)[0].status == "open"
    messages = messages_for(database, due.reference)
    assert {m.recipient for m in messages} >= due.recipients
    assert {m.context["late_by_seconds"] for m in messages} == {late_by}
    assert messages_for(database, not_yet.reference) == []

    again = run("deadlines", "dispatch", "--now", "2025-05-07T09:00:00+01:00")

    assert again.exit_code == 0, again.output
    assert again.stdout == "sweep: 0 fired, 0 failed, 0 skipped\n"
    assert len(messages_for(database, due.reference)) == len(messages)


def test_dispatch_fires_and_keeps_sweeping_when_a_timer_is_months_late(
        run: Cli, database: Database, two_cases: tuple[OpenedCase, OpenedCase]) -> None:
    # More than 2**31 ms (~24.8 days) late: once overflowed the INTEGER lateness_ms column on
    # PostgreSQL, failing the oldest timer's commit on every sweep so that nothing fired again.
    now = datetime(2025, 12, 25, 9, tzinfo=UTC)
    late = [now - deadlines_of(database, c.instance_id)[0].due_at for c in two_cases]
    assert min(late) > timedelta(milliseconds=INT32_MAX_MS)

    result = run("deadlines", "dispatch", "--now", now.isoformat())

    assert result.exit_code == 0, result.output
    assert result.stdout == f"sweep: 2 fired, 0 failed, 0 skipped; lateness max {max(late).total_seconds():.0f} s\n"
    for case, lateness in zip(two_cases, late, strict=True):
        (timer,) = timers_of(database, case.instance_id)
        assert (timer.status, timer.lateness_ms) == ("fired", int(lateness.total_seconds() * 1000))  # 64-bit
        assert {m.context["late_by_seconds"] for m in messages_for(database, case.reference)} == {
            lateness.total_seconds()}  # the message says the true lateness


@pytest.mark.parametrize(("now", "fragment"), [
    ("garbage", "'garbage' must be a date, or a date and time"),
    ("2025-03-30T01:15", "did not happen in UK time (the clocks went forward)"),
], ids=["garbage", "skipped-hour"])
def test_dispatch_refuses_with_one_line_and_fires_nothing_when_now_is_not_a_time(
        run: Cli, database: Database, two_cases: tuple[OpenedCase, OpenedCase], now: str, fragment: str) -> None:
    result = run("deadlines", "dispatch", "--now", now)

    lines = assert_refused(result, fragment)
    assert len(lines) == 1
    assert {r.status for r in database.raw("SELECT status FROM wf_timers")} == {"pending"}
    assert database.raw("SELECT count(*) AS n FROM outbox")[0].n == 0


def test_list_overdue_json_gives_only_the_passed_deadlines_when_some_have_fired(
        run: Cli, database: Database, two_cases: tuple[OpenedCase, OpenedCase]) -> None:
    due, not_yet = two_cases
    assert run("deadlines", "dispatch", "--now", "2025-05-07T09:00:00+01:00").exit_code == 0

    overdue = run("deadlines", "list", "--overdue", "--json")
    everything = run("deadlines", "list", "--json")

    assert overdue.exit_code == 0, overdue.output
    (row,) = json.loads(overdue.stdout)
    assert (row["reference"], row["deadline"], row["status"], row["stage"]) == (
        due.reference, "consent_and_risk", "overdue", "reported")
    assert datetime.fromisoformat(row["due_at"]) == deadlines_of(database, due.instance_id)[0].due_at
    assert [(r["reference"], r["status"]) for r in json.loads(everything.stdout)] == [
        (due.reference, "overdue"), (not_yet.reference, "open")]  # soonest first


def test_extend_refuses_and_changes_nothing_when_new_due_time_is_in_the_past(
        run: Cli, database: Database, two_cases: tuple[OpenedCase, OpenedCase]) -> None:
    due, _ = two_cases
    assert run("deadlines", "dispatch", "--now", "2025-05-07T09:00:00+01:00").exit_code == 0
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    before = (deadlines_of(database, due.instance_id), timers_of(database, due.instance_id),
              database.raw("SELECT count(*) AS n FROM wf_history")[0].n)

    result = run("deadlines", "extend", due.reference, "consent_and_risk", "--to", past,
                 "--reason", "Awaiting interpreter", "--as", due.lead_email)

    lines = assert_refused(result, "error: RPR-", "is in the past; an extension must be later than now")
    assert len(lines) == 1
    after = (deadlines_of(database, due.instance_id), timers_of(database, due.instance_id),
             database.raw("SELECT count(*) AS n FROM wf_history")[0].n)
    assert after == before
