"""The database lost in the middle of a request: a page answers 503 with the GOV.UK "Sorry, there is a
problem with the service" page, the API a problem+json 503, both with Retry-After; never 500, and
nothing is written. The test cuts the app's own connection (``pg_terminate_backend`` of the backend
that is about to run a statement), never the shared server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from tests.web.conftest import Web, case_state, count_rows
from tests.web.test_api import Api, consent_fields, new_case_body

pytestmark = pytest.mark.postgresql_only


class Cutter:
    """Terminates the app's connection just before the first statement that matches ``pattern``."""

    def __init__(self, web: Web) -> None:
        self.engine = web.rt.db
        self.admin = sa.create_engine(web.database.url, poolclass=sa.pool.NullPool)
        self.pattern: re.Pattern[str] | None = None
        self.cut = 0
        event.listen(self.engine, "before_cursor_execute", self._before)

    def arm(self, pattern: str) -> None:
        self.pattern, self.cut = re.compile(pattern, re.S | re.I), 0

    def _before(self, _conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if self.pattern is None or not self.pattern.search(statement):
            return
        self.pattern = None
        pid = cursor.connection.info.backend_pid
        with self.admin.connect() as admin:
            assert admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        self.cut += 1

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        self.admin.dispose()


@pytest.fixture
def cutter(web: Web) -> Iterator[Cutter]:
    c = Cutter(web)
    yield c
    c.close()


def test_a_page_is_503_with_the_service_problem_page_when_the_connection_is_cut(web: Web, cutter: Cutter) -> None:
    client = web.sign_in(web.world.lead)
    assert client.get("/cases/").status_code == 200

    cutter.arm(r"FROM cases")
    response = client.get("/cases/")

    assert cutter.cut == 1
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    html = response.get_data(as_text=True)
    assert "Sorry, there is a problem with the service" in html and "Nothing was saved" in html
    assert "Traceback" not in html and "OperationalError" not in html and "psycopg" not in html
    assert client.get("/cases/").status_code == 200  # the pool gives the next request a live connection


def test_a_case_action_cut_before_commit_is_503_and_writes_nothing(web: Web, cutter: Cutter) -> None:
    api = Api(web, web.world.lead)
    before_rows, before_case = count_rows(web.database), case_state(web.database, web.world.reported)

    version = api.get(f"/api/cases/{web.world.reported}").get_json()["version"]
    cutter.arm(r"^\s*INSERT INTO wf_history")
    response = api.post(f"/api/cases/{web.world.reported}/actions/record_consent_and_risk",
                        {"expected_version": version, "fields": consent_fields(web)})

    assert response.status_code == 503, response.get_data(as_text=True)
    assert cutter.cut == 1
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "30"
    body = response.get_json()
    assert body["status"] == 503 and body["title"] == "Sorry, there is a problem with the service"
    assert "Nothing was saved" in body["detail"]
    assert count_rows(web.database) == before_rows
    assert case_state(web.database, web.world.reported) == before_case


def test_sign_in_page_is_503_not_500_when_the_session_lookup_loses_its_connection(web: Web, cutter: Cutter) -> None:
    client = web.sign_in(web.world.staff)
    cutter.arm(r"FROM web_sessions")
    response = client.get("/")
    assert cutter.cut == 1
    assert response.status_code == 503
    assert "Sorry, there is a problem with the service" in response.get_data(as_text=True)


class CutAfterCommit:
    """Once armed, the first commit of an app session cuts every connection of the app and refuses new
    ones: whatever the request reads after its commit finds no database."""

    def __init__(self, web: Web) -> None:
        self.admin = sa.create_engine(web.database.url.rsplit("/", 1)[0] + "/postgres", poolclass=sa.pool.NullPool,
                                      isolation_level="AUTOCOMMIT")
        self.name = web.database.url.rsplit("/", 1)[1]
        self.armed = False
        self.cut = 0
        event.listen(Session, "after_commit", self._after)

    def _after(self, _session: Session) -> None:
        if not self.armed:
            return
        self.armed = False
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false'))
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                         {"n": self.name})
        self.cut += 1

    def restore(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true'))

    def close(self) -> None:
        event.remove(Session, "after_commit", self._after)
        self.restore()
        self.admin.dispose()


@pytest.fixture
def after_commit(web: Web) -> Iterator[CutAfterCommit]:
    c = CutAfterCommit(web)
    yield c
    c.close()


def test_a_committed_action_is_answered_as_saved_when_the_database_goes_after_the_commit(
        web: Web, after_commit: CutAfterCommit) -> None:
    api = Api(web, web.world.lead)
    version = api.get(f"/api/cases/{web.world.reported}").get_json()["version"]

    after_commit.armed = True
    response = api.post(f"/api/cases/{web.world.reported}/actions/record_consent_and_risk",
                        {"expected_version": version, "fields": consent_fields(web)})

    assert after_commit.cut == 1
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["stage"] == "triage"
    after_commit.restore()
    web.rt.db.dispose()  # the pool's connections were cut
    assert case_state(web.database, web.world.reported)["stage"] == "triage"


def test_a_committed_new_case_is_answered_201_when_the_database_goes_after_the_commit(
        web: Web, after_commit: CutAfterCommit) -> None:
    api = Api(web, web.world.lead)
    before = count_rows(web.database)["cases"]
    assert api.get("/api/cases").status_code == 200  # the token's first use is recorded (its own commit)

    after_commit.armed = True
    response = api.post("/api/cases", new_case_body(web))

    assert after_commit.cut == 1
    assert response.status_code == 201, response.get_data(as_text=True)
    after_commit.restore()
    assert count_rows(web.database)["cases"] == before + 1
