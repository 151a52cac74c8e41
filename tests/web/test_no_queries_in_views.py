"""No module under web/ builds a query: the views and the API read through reprisals/ (the read side,
reprisals.readside, and the services), decision 29. Checked over the source with ``ast``: no ``select(``,
``update(``, ``insert(`` or ``delete(`` from sqlalchemy, no ``.execute(``, ``.scalars(``, ``.scalar(`` or
``.query(``, no ``.get(Model, ...)`` of a model class.

Modules not converted yet are listed in ``LEFT`` with why; the test fails when one of them is clean (take it
off the list), so the list can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "web"
BUILDERS = {"select", "update", "insert", "delete"}
METHODS = {"execute", "scalars", "scalar", "query"}

EXEMPT = {
    "cli.py": "the operator's command: it is the service layer of its own commands (imports, repairs, demo "
              "data) and runs outside any request",
    "cli_reference.py": "part of the operator's command (reference data import and export)",
}
LEFT: dict[str, str] = {}  # every view reads through the read side now


def query_building(source: str) -> list[str]:
    """Where ``source`` builds or runs a query: ["12: select(", ...]."""
    tree = ast.parse(source)
    builders: set[str] = set()
    sa_modules: set[str] = set()
    models: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] == "sqlalchemy":
                builders |= {a.asname or a.name for a in node.names if a.name in BUILDERS}
            if node.module.split(".")[-1] == "models":
                models |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            sa_modules |= {a.asname or a.name for a in node.names if a.name.split(".")[0] == "sqlalchemy"}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in builders:
            found.append((node.lineno, f"{f.id}("))
        elif isinstance(f, ast.Attribute):
            if f.attr in BUILDERS and isinstance(f.value, ast.Name) and f.value.id in sa_modules:
                found.append((node.lineno, f"{f.value.id}.{f.attr}("))
            elif f.attr in METHODS:
                found.append((node.lineno, f".{f.attr}("))
            elif f.attr == "get" and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in models:
                found.append((node.lineno, f".get({node.args[0].id}"))
    return [f"{line}: {what}" for line, what in sorted(found)]


def modules() -> list[str]:
    return sorted(str(p.relative_to(WEB)) for p in WEB.rglob("*.py"))


def test_the_check_finds_each_kind_of_query() -> None:
    source = """
import sqlalchemy as sa
from sqlalchemy import select as pick, update
from reprisals.models import User
from workflow.models import DeadlineRow
def view(db, request):
    db().scalars(pick(User))
    sa.delete(User)
    update(User)
    db().execute("x"); db().scalar("y"); db().query(User)
    db().get(DeadlineRow, 1)
    request.args.get("page")  # not a query
    {"a": 1}.get(SPEC_KEY)  # nor this: not a model
"""
    found = query_building(source)
    assert [f.split(": ", 1)[1] for f in found] == [
        ".scalars(", "pick(", "sa.delete(", "update(", ".execute(", ".query(", ".scalar(", ".get(DeadlineRow"]


@pytest.mark.parametrize("module", [m for m in modules() if m not in EXEMPT])
def test_no_view_builds_a_query(module: str) -> None:
    found = query_building((WEB / module).read_text(encoding="utf-8"))
    if module in LEFT:
        assert found, f"web/{module} builds no query any more: take it off LEFT ({LEFT[module]})"
        return
    assert not found, f"web/{module} builds queries (move them to reprisals/, e.g. reprisals/readside): {found}"


def test_the_lists_name_modules_that_exist() -> None:
    assert set(EXEMPT) | set(LEFT) <= set(modules())
    assert all(why.startswith("left: ") for why in LEFT.values())
