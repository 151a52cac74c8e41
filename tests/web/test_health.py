"""/healthz and /healthz/scheduler: the database decides /healthz; the scheduler's heartbeat, written only
by the scheduler's own sweep job, decides /healthz/scheduler (three sweep intervals)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from reprisals.accounts import beat, heartbeat_age
from reprisals.runtime import Runtime
from tests.conftest import Database
from tests.web.conftest import Cli
from tests.web.test_app import settings_for
from web.app import create_app
from web.scheduler import SWEEP_JOB_ID, build_scheduler

INTERVAL = 15  # the default sweep interval: stale after 45 s


@pytest.fixture
def runtime(database: Database, tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime.from_settings(settings_for(database.url, tmp_path))
    yield rt
    rt.close()


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return create_app(runtime=runtime)


def age_now(runtime: Runtime) -> float | None:
    with runtime.sessions() as s:
        return heartbeat_age(s, "scheduler", runtime.clock.now())


def test_scheduler_health_is_503_until_the_scheduler_job_sweeps_and_then_200(app: Flask, runtime: Runtime) -> None:
    client = app.test_client()
    before = client.get("/healthz/scheduler")
    assert before.status_code == 503
    assert before.get_json() == {"status": "error", "scheduler": "no recent heartbeat",
                                 "scheduler_heartbeat_age_seconds": None, "limit_seconds": 3.0 * INTERVAL}
    assert client.get("/healthz").status_code == 200  # the pages stay up without a scheduler

    scheduler = build_scheduler(runtime, blocking=False)
    scheduler.start(paused=True)  # no tick: the test runs the registered job itself, once
    try:
        scheduler.get_job(SWEEP_JOB_ID).func()
    finally:
        scheduler.shutdown(wait=False)

    after = client.get("/healthz/scheduler")
    assert after.status_code == 200
    body = after.get_json()
    assert body["status"] == "ok" and 0 <= body["scheduler_heartbeat_age_seconds"] < 30
    assert "scheduler" not in client.get("/healthz").get_json()


@pytest.mark.parametrize(("seconds_ago", "status"), [(3 * INTERVAL - 5, 200), (3 * INTERVAL + 5, 503)])
def test_scheduler_health_fails_only_past_three_sweep_intervals(app: Flask, runtime: Runtime, seconds_ago: int,
                                                                status: int) -> None:
    with runtime.transaction() as s:
        beat(s, "scheduler", runtime.clock.now() - timedelta(seconds=seconds_ago))

    response = app.test_client().get("/healthz/scheduler")
    assert response.status_code == status
    assert seconds_ago - 1 <= response.get_json()["scheduler_heartbeat_age_seconds"] <= seconds_ago + 30
    healthz = app.test_client().get("/healthz")
    assert healthz.status_code == 200  # an old heartbeat is reported on /healthz, never a failure
    assert ("scheduler" in healthz.get_json()) is (status == 503)


def test_manual_dispatch_does_not_refresh_the_heartbeat(run: Cli, runtime: Runtime) -> None:
    stale = runtime.clock.now() - timedelta(hours=1)
    with runtime.transaction() as s:
        beat(s, "scheduler", stale)

    result = run("deadlines", "dispatch")
    assert result.exit_code == 0, result.output
    assert "sweep:" in result.output
    age = age_now(runtime)
    assert age is not None and age >= 3600  # still the scheduler's last beat, an hour ago


def test_both_health_checks_are_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    rt = Runtime.from_settings(settings_for("postgresql://reprisals@127.0.0.1:1/reprisals", tmp_path))
    try:
        client = create_app(runtime=rt).test_client()
        for path in ("/healthz", "/healthz/scheduler"):
            response = client.get(path)
            assert response.status_code == 503
            assert response.get_json()["database"] == "unreachable"
    finally:
        rt.close()
