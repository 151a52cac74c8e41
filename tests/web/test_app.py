"""The Flask application factory: it wires a runtime and nothing else (no tables, no connections, no
threads); /healthz reports the database and the scheduler's heartbeat."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from reprisals.config import Settings, load_settings
from reprisals.runtime import Runtime
from tests.conftest import Database
from tests.factories import TEST_KEY
from tests.web.conftest import SECRET_KEY
from web.app import create_app


def settings_for(url: str, tmp_path: Path, **extra: str) -> Settings:
    return load_settings({"REPRISALS_DATABASE_URL": url, "REPRISALS_INSTANCE_PATH": str(tmp_path / "instance"),
                          "REPRISALS_SECRET_KEY": SECRET_KEY, "REPRISALS_ENCRYPTION_KEYS": TEST_KEY,
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
    from datetime import timedelta

    from reprisals.accounts import beat

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
