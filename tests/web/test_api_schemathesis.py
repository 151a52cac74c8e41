"""Property-based tests of the API against its own OpenAPI document (schemathesis, in-process over
WSGI): for every operation, generated requests with a valid token never cause a server error, and every
response has a documented status, a documented content type and a body that matches its schema.

SQLite only: the checks are about the API's contract, not the database, and ~25 examples per operation
on a fresh PostgreSQL database would add minutes to the suite for no extra coverage.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reprisals.accounts import create_token
from reprisals.models import User
from tests.web.conftest import Web

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25


def _fresh_token(web: Web, email: str) -> str:
    """A new token per request: a generated DELETE /api/tokens/{id} may revoke the one in use."""
    with web.database.session() as s:
        user = s.scalars(sa.select(User).where(User.email == email)).one()
        _, secret = create_token(s, user, "schemathesis", datetime.now(UTC))
        s.commit()
    return secret


def _run(web: Web, strategy: st.SearchStrategy[Any], email: str) -> int:
    calls = 0

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case: Any) -> None:
        nonlocal calls
        headers = {"Authorization": f"Bearer {_fresh_token(web, email)}"}
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        assert response.status_code != 401, response.text  # the token was accepted: the API was exercised
        calls += 1

    check()
    return calls


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_every_operation_conforms_to_the_document(web: Web) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", web.app)
    results = list(schema.get_all_operations())
    assert all(isinstance(r, Ok) for r in results), results
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) >= 10
    for operation in operations:
        assert _run(web, operation.as_strategy(), web.world.lead) > 0, operation.label

    # Again on real cases, so that the case views and actions run on more than 404s.
    by_label = {op.label: op for op in operations}
    for label in ("GET /api/cases/{reference}", "POST /api/cases/{reference}/actions/{trigger}"):
        for reference in (web.world.reported, web.world.triaged):
            strategy = by_label[label].as_strategy(path_parameters={"reference": reference})
            for email in (web.world.lead, web.world.staff):
                assert _run(web, strategy, email) > 0
