"""The Flask application factory: it wires a runtime and nothing else (no tables, no connections, no
threads); /healthz reports the database and the scheduler's heartbeat; /healthz/scheduler fails when
only a stale heartbeat, which only the scheduler's own sweep job writes, is there."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from reprisals.accounts import beat, heartbeat_age
from reprisals.config import Settings, load_settings
from reprisals.runtime import Runtime
from tests.conftest import Database
from tests.factories import TEST_KEY, TEST_PSEUDONYM_KEY
from tests.web.conftest import SECRET_KEY, Cli
from web.app import create_app
from web.scheduler import SWEEP_JOB_ID, build_scheduler


def settings_for(url: str, tmp_path: Path, **extra: str) -> Settings:
    return load_settings({"REPRISALS_DATABASE_URL": url, "REPRISALS_INSTANCE_PATH": str(tmp_path / "instance"),
                          "REPRISALS_SECRET_KEY": SECRET_KEY, "REPRISALS_ENCRYPTION_KEYS": TEST_KEY,
                          "REPRISALS_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY,
                          **{f"REPRISALS_{k}": v for k, v in extra.items()}}, dotenv=None)


@pytest.fixture
def runtime(database: Database, tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime.from_settings(settings_for(database.url, tmp_path))
    yield rt
    rt.close()


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return create_app(runtime=runtime)


def test_healthz_reports_database_ok_and_no_scheduler_heartbeat_yet(app: Flask) -> None:
    response = app.test_client().get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "scheduler_heartbeat_age_seconds": None,
                                   "scheduler": "no recent heartbeat"}


def test_healthz_reports_the_age_of_the_scheduler_heartbeat(app: Flask, runtime: Runtime) -> None:
    with runtime.transaction() as s:
        beat(s, "scheduler", runtime.clock.now() - timedelta(seconds=20))
    body = app.test_client().get("/healthz").get_json()
    assert 19 <= body["scheduler_heartbeat_age_seconds"] <= 60
    assert "scheduler" not in body


def test_healthz_is_503_without_details_when_database_is_unreachable(tmp_path: Path) -> None:
    url = "postgresql://reprisals:hunter2secret@127.0.0.1:1/reprisals"
    rt = Runtime.from_settings(settings_for(url, tmp_path))
    try:
        response = create_app(runtime=rt).test_client().get("/healthz")
    finally:
        rt.close()

    assert response.status_code == 503
    assert response.get_json() == {"status": "error", "database": "unreachable"}
    assert b"hunter2secret" not in response.data


def test_create_app_makes_no_tables_when_database_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()

    app = create_app(settings_for(f"sqlite:///{path}", tmp_path))

    assert isinstance(app, Flask)
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_create_app_opens_no_connection_and_starts_no_thread_when_building_the_app(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network use during create_app")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    threads = set(threading.enumerate())
    settings = settings_for("postgresql://app@db.invalid/reprisals", tmp_path)
    rt = Runtime.from_settings(settings)
    connects: list[Any] = []
    event.listen(rt.db, "connect", lambda *a: connects.append(a))

    create_app(runtime=rt)
    create_app(settings)  # building its own runtime does not connect either

    assert attempts == []
    assert connects == []
    assert set(threading.enumerate()) == threads  # no scheduler, no background worker
    rt.close()


def test_session_cookie_is_secure_only_when_running_in_production(tmp_path: Path) -> None:
    dev = create_app(settings_for("sqlite:///" + str(tmp_path / "x.db"), tmp_path))
    prod = create_app(settings_for("sqlite:///" + str(tmp_path / "x.db"), tmp_path, ENV="production"))

    assert (dev.config["SESSION_COOKIE_SECURE"], prod.config["SESSION_COOKIE_SECURE"]) == (False, True)
    assert prod.config["SESSION_COOKIE_HTTPONLY"] is True
    assert prod.secret_key == SECRET_KEY


# -- /healthz/scheduler: only the scheduler's own sweep job writes the heartbeat ----------------------

INTERVAL = 15  # the default sweep interval: stale after 45 s


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
