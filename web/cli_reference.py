"""``reprisals bodies``, ``establishments`` and ``tokens``: what an operator needs to take an empty
database to its first case without a browser (the four protocol bodies come with ``db upgrade``).

Each command owns one transaction, as in :mod:`web.cli`; a refused command writes nothing and prints
one ``error:`` line per problem (``error: line 7: nation: …`` for a bad row of an import).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from reprisals import reference
from reprisals.accounts import ApiToken, create_token, list_tokens, revoke_token, tokens_of
from reprisals.emails import normalise_email
from reprisals.messaging import local_text
from reprisals.models import Establishment, EstablishmentType, Nation, User
from reprisals.reference import OPTIONAL_COLUMNS, TYPE_LABELS, ImportRefused
from reprisals.vocabulary import NATION_LABELS
from web.cli import _emit, cli, fail, progress_bar, runtime
from workflow.clock import ensure_utc

MAX_IMPORT_BYTES = 20 * 1024 * 1024


def _user(session: Session, email: str, *, active: bool = True) -> User:
    user = session.scalars(select(User).where(User.email == normalise_email(email))).one_or_none()
    if user is None or (active and not user.active):
        fail(f"no {'active ' if active else ''}user has the e-mail address {email.strip()} "
             "(see `reprisals users add`)")
    return user


def _when(at: datetime) -> str:
    return local_text(ensure_utc(at))


# -- bodies -----------------------------------------------------------------------------------------


@cli.group()
def bodies() -> None:
    """The bodies users belong to (the four of the sanctions protocol are always there)."""


def _body_dict(body: Any) -> dict[str, Any]:
    return {"code": body.code, "name": body.name}


@bodies.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bodies_list(ctx: click.Context, as_json: bool) -> None:
    """Every body, by code."""
    rt = runtime(ctx)
    with rt.sessions() as session:
        data = [_body_dict(b) for b in reference.list_bodies(session)]

    def human(items: list[dict[str, Any]]) -> None:
        for b in items:
            click.echo(f"{b['code']:<8} {b['name']}")

    _emit(data, as_json, human)


@bodies.command("add")
@click.option("--code", required=True, help="2 to 8 letters or digits, such as IMB.")
@click.option("--name", required=True, help="The body's full name.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bodies_add(ctx: click.Context, code: str, name: str, as_json: bool) -> None:
    """Add a body."""
    rt = runtime(ctx)
    with rt.transaction() as session:
        data = _body_dict(reference.add_body(session, None, {"code": code, "name": name}))
    _emit(data, as_json, lambda b: click.echo(f"body {b['code']} added: {b['name']}"))


# -- establishments ---------------------------------------------------------------------------------


@cli.group()
def establishments() -> None:
    """The places of detention cases are reported against."""


def _establishment_dict(e: Establishment) -> dict[str, Any]:
    return {"id": e.id, "name": e.name, "type": e.type.value, "nation": e.nation.value, "operator": e.operator,
            "active": e.active, **{c: getattr(e, c) for c in OPTIONAL_COLUMNS}}


def _print_establishments(items: list[dict[str, Any]]) -> None:
    if not items:
        click.echo("no establishments (add them with `reprisals establishments import FILE.csv`)")
    for e in items:
        kind = TYPE_LABELS[EstablishmentType(e["type"])]
        nation = NATION_LABELS[Nation(e["nation"])]
        inactive = "  (inactive)" if not e["active"] else ""
        click.echo(f"{e['id']:>5}  {e['name']:<40} {kind:<28} {nation:<16} {e['operator']}{inactive}")


@establishments.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def establishments_list(ctx: click.Context, as_json: bool) -> None:
    """Every establishment with its id (which `case open` and the API's establishment_id take)."""
    rt = runtime(ctx)
    with rt.sessions() as session:
        data = [_establishment_dict(e) for e in reference.list_establishments(session)]
    _emit(data, as_json, _print_establishments)


@establishments.command("add")
@click.option("--name", required=True)
@click.option("--type", "kind", required=True, help="A code (young_offender_institution) or label.")
@click.option("--nation", required=True, help="england, wales, scotland or northern_ireland (or the name).")
@click.option("--operator", required=True, help="Who runs it, such as HMPPS.")
@click.option("--address-line-1")
@click.option("--address-line-2")
@click.option("--address-line-3")
@click.option("--town")
@click.option("--postcode")
@click.option("--head-of-establishment-title", help="How letters address the head, such as Governor.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def establishments_add(ctx: click.Context, /, kind: str, as_json: bool, **values: str | None) -> None:
    """Add one establishment."""
    data = {k: v for k, v in values.items() if v is not None} | {"type": kind}
    rt = runtime(ctx)
    with rt.transaction() as session:
        out = _establishment_dict(reference.add_establishment(session, None, data))
    _emit(out, as_json, lambda e: click.echo(f"establishment {e['id']} added: {e['name']}"))


@establishments.command("import")
@click.argument("file")
@click.option("--update", is_flag=True, help="Update establishments whose name is in the file already.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def establishments_import(ctx: click.Context, file: str, update: bool, as_json: bool) -> None:
    """Import establishments from a CSV file (or - for standard input): a header row with name, type,
    nation, operator and optionally address_line_1, address_line_2, address_line_3, town, postcode and
    head_of_establishment_title, then one establishment a line. All or nothing: every bad line is
    reported and then nothing is imported."""
    data = _read(file)
    rt = runtime(ctx)
    try:
        with rt.transaction() as session, progress_bar("importing") as progress:
            result = reference.import_establishments(session, None, data, update=update, progress=progress)
            names = {n.casefold() for n in result.names}
            rows = [_establishment_dict(e) for e in reference.list_establishments(session)
                    if e.name.casefold() in names]
    except ImportRefused as exc:
        for problem in exc.problems:
            hint = "; add --update to change it" if problem.exists else ""
            click.echo(f"error: {problem.text()}{hint}", err=True)
        sys.exit(1)
    out = {"added": result.added, "updated": result.updated, "unchanged": result.unchanged, "establishments": rows}
    _emit(out, as_json, lambda d: click.echo(
        f"imported {file}: {d['added']} added, {d['updated']} updated, {d['unchanged']} unchanged"))


def _read(file: str) -> bytes:
    if file == "-":
        data = sys.stdin.buffer.read(MAX_IMPORT_BYTES + 1)
    else:
        try:
            with Path(file).open("rb") as handle:
                data = handle.read(MAX_IMPORT_BYTES + 1)
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror or exc}")
    if len(data) > MAX_IMPORT_BYTES:
        fail(f"{file} is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB")
    return data


# -- API tokens -------------------------------------------------------------------------------------


@cli.group()
def tokens() -> None:
    """API tokens (the secret is printed once, when the token is made; only its SHA-256 is kept)."""


def _token_dict(row: ApiToken) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "email": row.user.email, "created_at": row.created_at,
            "last_used_at": row.last_used_at, "revoked_at": row.revoked_at}


@tokens.command("add")
@click.option("--email", required=True, help="The user the token acts as.")
@click.option("--name", required=True, help="What it is for, such as 'case import script'.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tokens_add(ctx: click.Context, email: str, name: str, as_json: bool) -> None:
    """Make an API token for a user and print its secret (standard output: the secret alone)."""
    rt = runtime(ctx)
    with rt.transaction() as session:
        user = _user(session, email)
        row, secret = create_token(session, user, name, rt.clock.now(), via="cli")  # logged as the operator's
        out = {**_token_dict(row), "secret": secret}
    if as_json:
        _emit(out, True, lambda _d: None)
        return
    click.echo(secret)
    click.echo(f"API token {out['id']} ({out['name']}) made for {out['email']}: keep the secret above now, it "
               "cannot be shown again", err=True)


@tokens.command("list")
@click.option("--email", help="Only this user's tokens.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tokens_list(ctx: click.Context, email: str | None, as_json: bool) -> None:
    """API tokens, oldest first (never their secrets)."""
    rt = runtime(ctx)
    with rt.sessions() as session:
        rows = tokens_of(session, _user(session, email, active=False)) if email else list_tokens(session)
        data = [_token_dict(r) for r in rows]

    def human(items: list[dict[str, Any]]) -> None:
        if not items:
            click.echo("no API tokens")
        for t in items:
            used = f"last used {_when(t['last_used_at'])}" if t["last_used_at"] else "never used"
            state = f"revoked {_when(t['revoked_at'])}" if t["revoked_at"] else used
            click.echo(f"{t['id']:>5}  {t['email']:<32} {t['name']:<30} made {_when(t['created_at'])}; {state}")

    _emit(data, as_json, human)


@tokens.command("revoke")
@click.argument("token_id", metavar="ID")
@click.pass_context
def tokens_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token (its id from `reprisals tokens list`); it stops working at once."""
    if not token_id.strip().isdigit() or int(token_id) > 2**31 - 1:
        fail(f"'{token_id}' is not a token id: use the number `reprisals tokens list` shows")
    rt = runtime(ctx)
    with rt.transaction() as session:
        row = session.get(ApiToken, int(token_id))
        if row is None:
            fail(f"there is no API token {int(token_id)} (see `reprisals tokens list`)")
        already = row.revoked_at
        revoke_token(session, row.id, row.user, rt.clock.now(), via="cli")  # the operator acts for the owner
        message = (f"API token {row.id} ({row.name}) of {row.user.email} "
                   + (f"was already revoked on {_when(already)}" if already else "is revoked"))
    click.echo(message)
