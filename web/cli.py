"""The ``reprisals`` command. Each command owns one transaction; every refusal or bad input ends
with one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from reprisals.access_log import KINDS, record
from reprisals.config import load_settings
from reprisals.crypto import generate_key
from reprisals.emails import email_problem, normalise_email
from reprisals.errors import ConfigurationError, InvalidInput, ReprisalsError
from reprisals.models import Body, Role, User
from reprisals.passwords import hash_password, password_problem
from reprisals.runtime import Runtime
from reprisals.wording import explain
from workflow.errors import MissingFields, SpecError, WorkflowError

log = logging.getLogger("reprisals.cli")


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Turns the project's errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        ctx.ensure_object(dict)  # one dict shared with the subcommands (runtime, case_context)
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            for problem in exc.problems:
                click.echo(f"error: configuration: {problem}", err=True)
            sys.exit(2)
        except SpecError as exc:
            for spec_problem in exc.problems:
                click.echo(f"error: {exc.source}: {spec_problem}", err=True)
            sys.exit(1)
        except (MissingFields, InvalidInput) as exc:
            for name, message in sorted(exc.errors.items()):
                shown_name = "--occurred-at" if name == "occurred_at" else name  # as the command takes it
                click.echo(f"error: {shown_name}: {message}", err=True)
            sys.exit(1)
        except (WorkflowError, ReprisalsError) as exc:
            # The command that acted on a case left its reference, protocol and next actions here.
            context = ctx.obj.get("case_context", {})
            fail(explain(exc, **context))
        except OperationalError as exc:
            fail(f"the database cannot be used: {str(exc.orig).splitlines()[0] if exc.orig else exc}"
                 " (is it running, and has `reprisals db upgrade` been run?)", 3)


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A ``(done, total)`` callback drawing a progress bar on standard error while it runs — only when
    that is a terminal, so piped and captured output stays exactly the command's result."""
    if not sys.stderr.isatty():
        yield lambda _done, _total: None
        return
    bar: Any = None
    shown = 0

    def update(done: int, total: int) -> None:
        nonlocal bar, shown
        if bar is None:
            bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr, show_pos=True)
            bar.__enter__()
        if done - shown >= max(1, total // 200) or done == total:  # at most ~200 redraws
            bar.update(done - shown)
            shown = done

    try:
        yield update
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def runtime(ctx: click.Context, *, warn: bool = False) -> Runtime:
    """The process's runtime, built on first use. ``warn`` prints configuration warnings (the
    commands that start things do; the rest stay quiet so their output can be piped)."""
    obj = ctx.ensure_object(dict)
    if "runtime" not in obj:
        settings = load_settings()
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("transitions").setLevel(logging.WARNING)  # it logs every state callback at INFO
        if warn:
            for warning in settings.warnings:
                click.secho(f"warning: {warning}", fg="yellow", err=True)
        obj["runtime"] = Runtime.from_settings(settings)
        ctx.call_on_close(obj["runtime"].close)
    rt: Runtime = obj["runtime"]
    return rt


def _user(session: Any, email: str) -> User:
    user = session.scalars(select(User).where(User.email == email.strip().lower())).one_or_none()
    if user is None or not user.active:
        fail(f"no active user with e-mail {email}")
    return user  # type: ignore[no-any-return]


def _about_case(rt: Runtime, user: User, c: Any) -> None:
    """Let a refusal on this case name it, in its protocol's words, with what the user can do next."""
    from reprisals.services import allowed_actions

    click.get_current_context().ensure_object(dict)["case_context"] = {
        "reference": c.reference, "spec": rt.engine.spec(c.instance.spec_key, c.instance.spec_version),
        "next_actions": allowed_actions(rt.engine, user, c, rt.clock.now())}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=_json_default, sort_keys=True))
    else:
        human(data)


@click.group(cls=Group)
def cli() -> None:
    """Case tracking for suspected reprisals against people in detention."""


# -- database -------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Create or upgrade the schema (Alembic)."""
    import migrations

    rt = runtime(ctx)
    try:
        migrations.upgrade(rt.settings.database_url, revision, rt.settings.encryption_keys)
    except RuntimeError as exc:  # a revision's own refusal (e.g. keys it needs), in its words
        fail(str(exc))
    at = migrations.current(rt.settings.database_url)
    click.echo(f"database at revision {at}")
    if at in migrations.heads():
        _link_people(rt)


def _link_people(rt: Runtime) -> None:
    from reprisals.pseudonyms import link_unlinked
    from reprisals.sealing import Keyring

    with rt.transaction() as session, progress_bar("linking people to pseudonyms") as progress:
        linked = link_unlinked(session, Keyring(rt.cipher), rt.clock.now(), progress)
    if linked:
        click.echo(f"linked {linked} person record(s) to pseudonyms")


@cli.group()
def people() -> None:
    """Pseudonyms: which cases concern the same person."""


@people.command("link")
@click.pass_context
def people_link(ctx: click.Context) -> None:
    """Hash and link every person record not linked yet, oldest case first (`db upgrade` does it too)."""
    _link_people(runtime(ctx))
    click.echo("every person record is linked")


# -- demo -----------------------------------------------------------------------------------------


@cli.command()
@click.option("--if-empty", is_flag=True, help="Do nothing (and succeed) if the database has users already.")
@click.pass_context
def demo(ctx: click.Context, if_empty: bool) -> None:
    """Load demo bodies, establishments, users and cases into an empty database."""
    from reprisals.demo import DEMO_PASSWORD, has_data, load_demo

    rt = runtime(ctx, warn=True)
    with rt.transaction() as session:
        if has_data(session):
            if if_empty:
                click.echo("demo: the database already has data; nothing loaded")
                return
            fail("the database already has data; demo data goes only into an empty database")
        click.echo("loading demo data…")
        users = load_demo(session, rt.engine, rt.cipher, rt.clock.now())
    click.echo(f"demo data loaded. Sign in with any of these (password: {DEMO_PASSWORD}):")
    for u in users:
        click.echo(f"  {u.email:<24} {u.role:<8} {u.body or '-':<5} {u.name}")


# -- users ----------------------------------------------------------------------------------------


@cli.group()
def users() -> None:
    """People who sign in."""


@users.command("add")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--body", help="HMIP, IMB, PPO or LO (not for admins).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def users_add(ctx: click.Context, email: str, name: str, role: str, body: str | None, password_stdin: bool) -> None:
    """Add a user, confirmed (a body's first lead, the first admin: the web cannot make a confirmed lead)."""
    rt = runtime(ctx)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    errors: dict[str, str] = {}
    email = normalise_email(email)
    if (problem := email_problem(email)) is not None:
        errors["email"] = f"is not an e-mail address: {problem}"
    if (problem := password_problem(password)) is not None:
        errors["password"] = problem
    if role == Role.ADMIN.value and body:
        errors["body"] = "admins belong to no body"
    if role != Role.ADMIN.value and not body:
        errors["body"] = "is required for this role"
    with rt.transaction() as session:
        if body and session.get(Body, body.upper()) is None:
            errors["body"] = f"'{body}' is not a body (see `reprisals bodies list`)"
        if session.scalars(select(User).where(User.email == email)).first() is not None:
            errors["email"] = "is already in use"
        if errors:
            raise InvalidInput(errors)
        # The operator's accounts are confirmed as made: a body's first lead (who confirms the others) and
        # the first admin come from the server, never from the web (decision 22).
        at = rt.clock.now()
        user = User(email=email, name=name.strip(), role=Role(role), body_code=body.upper() if body else None,
                    password_hash=hash_password(password), active=True, created_at=at, confirmed_at=at)
        session.add(user)
        session.flush()
        record(session, at, "user_added", via="cli", subject=user,
               detail={"role": user.role.value, **({"body": user.body_code} if user.body_code else {})})
        click.echo(f"user {user.id} added: {email} ({role}{', ' + user.body_code if user.body_code else ''})")


@users.command("reset-2fa")
@click.argument("email")
@click.pass_context
def users_reset_2fa(ctx: click.Context, email: str) -> None:
    """Reset a user's two-factor sign-in (a lost device): they set it up again at their next sign-in.
    The only way for an administrator's; for a member of a body an admin and a lead can do it on the
    pages. Ends the user's sessions; logged as the operator's."""
    from reprisals.two_factor import reset

    rt = runtime(ctx)
    with rt.transaction() as session:
        user = session.scalars(select(User).where(User.email == normalise_email(email))).one_or_none()
        if user is None:
            fail(f"there is no user with e-mail {email.strip()}")
        done = reset(session, user, rt.clock.now(), actor=None, via="cli")
        name = user.email
    if not done:
        fail(f"{name} has not set up two-factor sign-in: there is nothing to reset")
    click.echo(f"two-factor sign-in of {name} reset: they set it up again when they next sign in "
               "(their sessions have ended)")


# -- protocol -------------------------------------------------------------------------------------


@cli.group()
def protocol() -> None:
    """The sanctions protocol spec."""


@protocol.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def protocol_check(file: Path) -> None:
    """Validate a spec file; list every problem with its path inside the file."""
    from reprisals.protocol import check_spec_file

    spec = check_spec_file(file)
    click.echo(f"{file}: ok — {spec.key} version {spec.version}, {len(spec.stages)} stages, "
               f"{len(spec.triggers)} triggers")


@protocol.command("show")
@click.option("--version", "version", type=int, help="Spec version (default: newest).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def protocol_show(ctx: click.Context, version: int | None, as_json: bool) -> None:
    """Show the stages, deadlines and triggers of the protocol."""
    from reprisals.protocol import SPEC_KEY

    # The runtime's engine: the bundled versions and those configured in REPRISALS_PROTOCOL_FILES.
    spec = runtime(ctx).engine.spec(SPEC_KEY, version)
    data = {
        "key": spec.key, "version": spec.version, "title": spec.title, "initial": spec.initial,
        "stages": {n: {"label": s.label, "final": s.final,
                       "deadlines": [{"name": d.name, "label": d.label, "anchor": d.anchor,
                                      "due": {k: str(v) for k, v in d.due.values.items()} if d.due.by
                                      else str(d.due.default), "by": d.due.by,
                                      "reminders": [str(r) for r in d.reminders], "when": dict(d.when)}
                                     for d in s.deadlines]} for n, s in spec.stages.items()},
        "triggers": {n: {"label": t.label, "from": list(t.sources), "to": t.dest, "roles": sorted(t.roles),
                         "fields": sorted(t.fields), "guards": list(t.guards)} for n, t in spec.triggers.items()},
    }

    def human(d: dict[str, Any]) -> None:
        click.echo(f"{d['title']} ({d['key']} v{d['version']})")
        for name, s in d["stages"].items():
            click.echo(f"\n{name}{' (final)' if s['final'] else ''} — {s['label']}")
            for dl in s["deadlines"]:
                due = dl["due"] if isinstance(dl["due"], str) else ", ".join(f"{k}: {v}" for k, v in dl["due"].items())
                when = f" when {dl['when']}" if dl["when"] else ""
                rem = f"; reminders {', '.join(dl['reminders'])} before" if dl["reminders"] else ""
                click.echo(f"  deadline {dl['label']}: {due} after {dl['anchor']}{when}{rem}")
            for tname, t in d["triggers"].items():
                if name in t["from"]:
                    click.echo(f"  → {tname} → {t['to']}  [{', '.join(t['roles'])}]")

    _emit(data, as_json, human)


# -- cases ----------------------------------------------------------------------------------------


@cli.group()
def case() -> None:
    """Open, show and advance cases (as a named user)."""


def _case_dict(rt: Runtime, session: Any, user: User, c: Any, view: Any = None) -> dict[str, Any]:
    """The case as the command shows it; recipients typed by hand only inside ``view``'s unlock window."""
    from dataclasses import replace

    from reprisals.deadlines import list_deadlines
    from reprisals.letters import letters_of
    from reprisals.pseudonyms import person_view
    from reprisals.sensitive import letters_for
    from reprisals.services import linked_cases, offered_actions

    offers = offered_actions(rt.engine, user, c, rt.clock.now())
    running = [{"name": d.deadline.name, "label": d.deadline.label, "due_at": d.deadline.due_at,
                "status": d.deadline.status} for d in list_deadlines(session, case=c)]
    links = linked_cases(session, user, c)
    person = person_view(session, user, c)
    return {
        "deadlines": running,
        "person": person.person, "same_person_cases": [o.reference for o in person.others],
        "linked_case": links.linked_to.reference if links.linked_to else None,
        "linked_cases": [later.reference for later in links.linked_from],
        "reference": c.reference, "stage": c.stage, "risk": c.risk.value,
        "consent": c.consent.value if c.consent else None, "owning_body": c.owning_body_code,
        "parties": sorted(c.party_codes), "establishment": c.establishment.name,
        "nation": c.establishment.nation.value, "received_at": c.received_at, "channel": c.channel.value,
        "age_group": c.age_group.value, "sanction_types": c.sanction_types,
        "assigned_to": c.assigned_user.email if c.assigned_user else None,
        "outcome": c.outcome.value if c.outcome else None, "closed_at": c.closed_at,
        "version": c.instance.version, "allowed_actions": [o.trigger.name for o in offers],
        # What the fields must say, for actions whose guards depend on it (an override, a copy).
        "action_conditions": {o.trigger.name: list(o.conditions) for o in offers if o.conditions},
        "letters": [letter.as_dict() for letter in (
            letters_for(view) if view is not None
            else [replace(letter, hidden=True) for letter in letters_of(session, c)])],
    }


def _print_case(d: dict[str, Any]) -> None:
    from reprisals.deadlines import local_text

    click.echo(f"{d['reference']}  stage: {d['stage']}  risk: {d['risk']}  body: {d['owning_body']}")
    click.echo(f"  establishment: {d['establishment']} ({d['nation']})  received: {local_text(d['received_at'])} "
               "(UK time)")
    click.echo(f"  consent: {d['consent'] or '-'}  assigned to: {d['assigned_to'] or '-'}  "
               f"outcome: {d['outcome'] or '-'}")
    if d["person"]:
        others = f"; also in {', '.join(d['same_person_cases'])}" if d["same_person_cases"] else ""
        click.echo(f"  person: {d['person']}{others}")
    if d["linked_case"]:
        click.echo(f"  Linked to: {d['linked_case']} (this case was opened from it)")
    if d["linked_cases"]:
        click.echo(f"  Linked from: {', '.join(d['linked_cases'])} (opened from this case)")

    for dl in d["deadlines"]:
        click.echo(f"  deadline: {dl['label']} — due {local_text(dl['due_at'])} ({dl['status']})")
    if not d["deadlines"]:
        click.echo("  deadlines: none running")
    _print_letters(d["letters"])
    click.echo(f"  next: {', '.join(d['allowed_actions']) or 'nothing you can do'}")
    for name, conditions in d.get("action_conditions", {}).items():
        click.echo(f"    {name}: {'; '.join(conditions)}")


def _print_letters(letters: list[dict[str, Any]]) -> None:
    """Letters sent and responses received, as the case page lists them."""
    from reprisals.letters import Letter, uk_date

    if not letters:
        click.echo("  letters and responses: none")
        return
    click.echo("  letters and responses:")
    for data in letters:
        hidden = None in data["recipients"]  # typed by hand, withheld
        letter = Letter(**{**data, "hidden": hidden,
                           "recipients": tuple(r if r is not None else "" for r in data["recipients"])})
        if letter.is_letter:
            due = uk_date(letter.response_due) if letter.response_due else "no deadline"
            received = uk_date(letter.response_received) if letter.response_received else "not yet"
            click.echo(f"    {letter.kind_words} to {', '.join(letter.recipient_words) or 'no one recorded'} — sent "
                       f"{uk_date(letter.on)}; response due {due}; response received: {received}")
        else:
            source = letter.responder_words
            click.echo(f"    {letter.kind_words}{' from ' + source[:1].lower() + source[1:] if source else ''} — "
                       f"received {uk_date(letter.on)}")


@case.command("open")
@click.option("--as", "as_email", required=True, help="E-mail of the acting user.")
@click.option("--file", "file", type=click.File("r", encoding="utf-8"), default="-", show_default=True,
              help="JSON object with the case's fields.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def case_open(ctx: click.Context, as_email: str, file: Any, as_json: bool) -> None:
    """Record a reported concern."""
    from reprisals.services import open_case

    try:
        data = json.load(file)
    except json.JSONDecodeError as exc:
        fail(f"the input is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    except UnicodeDecodeError:
        fail("the input is not UTF-8 text")
    if not isinstance(data, dict):
        fail("the input must be a JSON object of field names and values")
    rt = runtime(ctx)
    with rt.transaction() as session:
        user = _user(session, as_email)
        c = open_case(session, rt.engine, rt.cipher, user, rt.clock.now(), data, messenger=rt.messenger)
        out = _case_dict(rt, session, user, c)
    _emit(out, as_json, lambda d: click.echo(f"opened {d['reference']} at stage {d['stage']}"))


@case.command("export")
@click.argument("reference")
@click.option("--as", "as_email", required=True, help="E-mail of the lead or auditor the operator acts as.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The file to write.")
@click.pass_context
def case_export(ctx: click.Context, reference: str, as_email: str, out: Path) -> None:
    """Write a case's history with its hash chain and the newest signed checkpoint that names it, for checking
    away from the server (`reprisals audit verify --file FILE --public-key KEY`). Sensitive values stay sealed."""
    from reprisals.access_log import record
    from reprisals.checkpoints import export_case
    from reprisals.proof import canonical
    from reprisals.services import get_case

    rt = runtime(ctx)
    with rt.transaction() as session:
        user = _user(session, as_email)
        c = get_case(session, user, reference.strip().upper())
        if user.role not in (Role.LEAD, Role.AUDITOR):
            fail("only leads and auditors export a case's history")
        document = export_case(session, c.instance_id, c.reference, rt.settings.checkpoint_dir)
        try:
            out.write_bytes(canonical(document) + b"\n")
        except OSError as exc:
            fail(f"{out}: cannot be written ({exc.strerror})")
        record(session, rt.clock.now(), "export", actor=user, via="cli", case_id=c.id,
               detail={"what": "case history", "events": len(document["events"])})
    anchored = "with" if document["checkpoint"] else "without"
    click.echo(f"{c.reference}: {len(document['events'])} events written to {out}, {anchored} a signed checkpoint")


@case.command("show")
@click.argument("reference")
@click.option("--as", "as_email", required=True, help="E-mail of the user the operator acts as.")
@click.option("--history", is_flag=True, help="Include every event.")
@click.option("--reason", help="Show who the person is, the description, the notes and free text: why you need to "
              "see them. Recorded in the case's history as the operator acting as the user (unless that user's "
              "30 minutes are still running); the read is recorded in the access log.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def case_show(ctx: click.Context, reference: str, as_email: str, history: bool, reason: str | None,
              as_json: bool) -> None:
    """Show a case the user may see. Sensitive content only with --reason (reprisals.sensitive)."""
    from reprisals.sensitive import read_sensitive, split_event, unlock, unlocked_until
    from reprisals.services import get_case, get_case_history

    rt = runtime(ctx)
    with rt.transaction() as session:
        user = _user(session, as_email)
        c = get_case(session, user, reference.strip().upper())
        now = rt.clock.now()
        if reason is not None:
            _about_case(rt, user, c)  # a refusal names the case
            if unlocked_until(session, user, c, now) is None:
                unlock(session, rt.engine, rt.cipher, user, c, reason, now, via="cli")
        # Without --reason, what the page shows before an unlock, even inside a window of the user's.
        view = read_sensitive(session, rt.cipher, user, c, now, via="cli", what="case show",
                              reveal=reason is not None)
        out = _case_dict(rt, session, user, c, view)
        out["note_count"] = view.note_count
        out["sensitive"] = None
        if view.unlocked and view.identity is not None:
            names = {str(u.id): f"{u.name} <{u.email}>" for u in session.scalars(
                select(User).where(User.id.in_({n.author_id for n in view.notes or []})))}
            out["sensitive"] = {
                "unlocked_until": view.until, "name": view.identity.name, "number": view.identity.number,
                "date_of_birth": view.identity.date_of_birth, "description": view.description,
                "notes": [{"at": n.at, "author": names.get(str(n.author_id), "unknown user"), "text": n.text}
                          for n in view.notes or []]}
        elif view.may_unlock:
            out["how_to_unlock"] = (f"reprisals case show {c.reference} --as {user.email} --reason "
                                    "'why you need to see who the person is'")
        if history:
            spec = rt.engine.spec(c.instance.spec_key, c.instance.spec_version)
            events = get_case_history(session, rt.engine, c)
            ids = {int(e.actor_id) for e in events if e.actor_id and str(e.actor_id).isdigit()}
            actors = {str(u.id): f"{u.name} <{u.email}>"
                      for u in session.scalars(select(User).where(User.id.in_(ids)))} if ids else {}
            out["history"] = []
            for e in events:
                data, free = split_event(spec, e)  # free text only inside the window, as on the case page
                out["history"].append({
                    "seq": e.seq, "kind": e.kind, "trigger": e.trigger, "from": e.from_stage, "to": e.to_stage,
                    "at": e.at, "actor": actors.get(str(e.actor_id), "unknown user") if e.actor_id else "the system",
                    "data": data, "free_text_given": sorted(free),
                    "free_text": {k: view.text(v) or "" for k, v in free.items()} if view.unlocked else None})

    def human(d: dict[str, Any]) -> None:
        _print_case(d)
        sensitive = d.get("sensitive")
        if sensitive:
            click.echo(f"  shown until {local_text(sensitive['unlocked_until'])} (UK time); this read is recorded")
            click.echo(f"  person: {sensitive['name']}  number: {sensitive['number'] or '-'}  "
                       f"date of birth: {sensitive['date_of_birth'] or '-'}")
            click.echo(f"  what happened: {sensitive['description']}")
            for n in sensitive["notes"]:
                click.echo(f"  note by {n['author']}, {local_text(n['at'])}: {n['text']}")
            if not sensitive["notes"]:
                click.echo("  notes: none")
        else:
            click.echo(f"  notes: {d['note_count']}; who the person is, the description, the notes and free text "
                       "are hidden")
            if d.get("how_to_unlock"):
                click.echo(f"  to see them for 30 minutes (recorded): {d['how_to_unlock']}")
        for e in d.get("history", []):
            move = f"{e['from']} → {e['to']}" if e["from"] else (e["to"] or "")
            click.echo(f"  {e['seq']:>3} {e['at']:%Y-%m-%d %H:%M} {e['kind']:<16} {e['trigger'] or '':<24} {move}"
                       f"  by {e['actor']}")
            for name in e["free_text_given"]:
                shown = e["free_text"][name] if e["free_text"] is not None else "(given; hidden without --reason)"
                click.echo(f"        {name}: {shown}")

    from reprisals.deadlines import local_text

    _emit(out, as_json, human)


@case.command("advance")
@click.argument("reference")
@click.argument("trigger")
@click.option("--as", "as_email", required=True)
@click.option("-f", "--field", "field_args", multiple=True, help="name=value (repeat; a list field may repeat).")
@click.option("--fields-json", help="All fields as one JSON object.")
@click.option("--expected-version", type=int, help="Refuse if the case changed since this version.")
@click.option("--occurred-at", help="When it happened, if not now: 2025-04-17T10:00 (UK time unless an offset is "
              "given) or a date (12:00 that day, or the previous action's time if on the same day). Deadlines run "
              "from it.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def case_advance(ctx: click.Context, reference: str, trigger: str, as_email: str, field_args: tuple[str, ...],
                 fields_json: str | None, expected_version: int | None, occurred_at: str | None,
                 as_json: bool) -> None:
    """Move a case forward with one of the protocol's actions."""
    from reprisals.services import advance_case, get_case

    fields: dict[str, Any] = {}
    if fields_json:
        try:
            fields = json.loads(fields_json)
        except json.JSONDecodeError as exc:
            fail(f"--fields-json is not valid JSON: {exc.msg}")
        if not isinstance(fields, dict):
            fail("--fields-json must be a JSON object")
    for item in field_args:
        if "=" not in item:
            fail(f"--field '{item}' must be name=value")
        name, value = item.split("=", 1)
        if name in fields:
            fields[name] = (fields[name] if isinstance(fields[name], list) else [fields[name]]) + [value]
        else:
            fields[name] = value
    rt = runtime(ctx)
    with rt.transaction() as session:
        user = _user(session, as_email)
        c = get_case(session, user, reference.strip().upper())
        _about_case(rt, user, c)
        before = c.stage
        advance_case(session, rt.engine, user, c, trigger, fields, rt.clock.now(), messenger=rt.messenger,
                     expected_version=expected_version,
                     occurred_at=occurred_at)
        out = _case_dict(rt, session, user, c)
        out["previous_stage"] = before
    _emit(out, as_json, lambda d: click.echo(
        f"{d['reference']}: {d['previous_stage']} → {d['stage']}" if d["previous_stage"] != d["stage"]
        else f"{d['reference']}: recorded; still at {d['stage']}"))


@case.command("redate")
@click.argument("reference")
@click.argument("seq", type=int)
@click.option("--as", "as_email", required=True)
@click.option("--occurred-at", required=True, help="When the action really happened: 2025-04-17T10:00 (UK time "
              "unless an offset is given) or a date.")
@click.option("--reason", required=True, help="Why the date recorded was wrong.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def case_redate(ctx: click.Context, reference: str, seq: int, as_email: str, occurred_at: str, reason: str,
                as_json: bool) -> None:
    """Correct when an action happened (event SEQ of `case show --history`): a correction that points at it
    is added to the history, and the deadlines it started are recomputed from the right moment."""
    from reprisals.services import get_case, redate_action

    rt = runtime(ctx)
    with rt.transaction() as session:
        user = _user(session, as_email)
        c = get_case(session, user, reference.strip().upper())
        _about_case(rt, user, c)
        redate_action(session, rt.engine, rt.timers, user, c, seq, occurred_at, reason, rt.clock.now())
        out = _case_dict(rt, session, user, c)
    _emit(out, as_json, lambda d: click.echo(f"{d['reference']}: event {seq} now happened at {occurred_at}"))


# -- outbox ---------------------------------------------------------------------------------------


@cli.group()
def outbox() -> None:
    """Messages waiting, sent and failed."""


@outbox.command("list")
@click.option("--failed", "only_failed", is_flag=True, help="Only messages that ended failed.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def outbox_list(ctx: click.Context, only_failed: bool, as_json: bool) -> None:
    """Recent messages (never their content: the reference, template, channel and status)."""
    from notifications.models import OutboxMessage
    from notifications.outbox import list_failed

    rt = runtime(ctx)
    with rt.sessions() as session:
        rows = (list_failed(session) if only_failed else
                list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(200))))
        data = [{"id": m.id, "reference": m.context.get("reference"), "template": m.template, "channel": m.channel,
                 "status": m.status, "attempts": m.attempts, "created_at": m.created_at,
                 "last_error": m.last_error} for m in rows]

    def human(items: list[dict[str, Any]]) -> None:
        if not items:
            click.echo("no messages" + (" have failed" if only_failed else ""))
        for m in items:
            error = f"  {m['last_error']}" if m["last_error"] else ""
            click.echo(f"{m['id']:>6} {m['status']:<8} {m['channel']:<7} {m['template']:<18} "
                       f"{m['reference'] or '-':<15} tries {m['attempts']}{error}")

    _emit(data, as_json, human)


@outbox.command("deliver")
@click.option("--now", "now_text", help="Deliver as of this ISO-8601 time (default: the clock).")
@click.pass_context
def outbox_deliver(ctx: click.Context, now_text: str | None) -> None:
    """Deliver every message whose time has come, once (operations and testing)."""
    from web.scheduler import build_channels, run_delivery
    from workflow.deadlines import parse_iso_time

    now = parse_iso_time(now_text) if now_text else None
    rt = runtime(ctx)
    result = run_delivery(rt, build_channels(rt.settings), now)
    click.echo(f"delivery: {result.sent} sent, {result.retried} to retry, {result.failed} failed")


# -- audit ----------------------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """Audit the history."""


@audit.command("checkpoint")
@click.option("--out", type=click.Path(path_type=Path), help="The file (or folder) to write; default: "
              "REPRISALS_CHECKPOINT_DIR.")
@click.pass_context
def audit_checkpoint(ctx: click.Context, out: Path | None) -> None:
    """Sign the heads of the ledger, of every case's history and of the access log, with the key in
    REPRISALS_AUDIT_SIGNING_KEY_FILE, and write the checkpoint (a small JSON file to copy off the server)."""
    from reprisals.access_log import record
    from reprisals.checkpoints import write
    from reprisals.proof import ProofError

    rt = runtime(ctx)
    key = rt.settings.audit_signing_key_file
    if key is None:
        fail("REPRISALS_AUDIT_SIGNING_KEY_FILE is not set: make a key pair with "
             "`reprisals keys generate --signing --out DIR` and point it at the private key", code=2)
    target = out or rt.settings.checkpoint_dir
    assert target is not None
    with rt.transaction() as session:
        try:
            document = write(session, key, target, rt.clock.now())
        except (ProofError, OSError) as exc:
            fail(str(exc))
        record(session, rt.clock.now(), "checkpoint_signed", via="cli",
               detail={"chains": document["chains"]["count"], "ledger": document["ledger"]["seq"]})
    click.echo(f"checkpoint written: {document['_path']} ({document['chains']['count']} cases, ledger entry "
               f"{document['ledger']['seq']})")


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True)
@click.option("--checkpoint", "checkpoint_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also check the database against this signed checkpoint (needs --public-key).")
@click.option("--public-key", "public_key_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The public key the checkpoint was signed with (audit-signing.pub).")
@click.option("--file", "export_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Check a case's export (`reprisals case export`) on its own: no database, no configuration.")
@click.pass_context
def audit_verify(ctx: click.Context, as_json: bool, checkpoint_file: Path | None,
                 public_key_file: Path | None, export_file: Path | None) -> None:
    """Check every hash chain of the history and the access log (each entry and each sealed day); with
    --checkpoint, also that the database still holds every head the signed checkpoint fixed (what a superuser
    can make consistent again: a tail cut and its head moved back, a ledger rewritten, a case removed). Exit 1
    and name each problem if anything was altered."""
    from reprisals.access_log import verify_log
    from reprisals.checkpoints import compare
    from reprisals.proof import ProofError, check, load_public_key, read, verify_export
    from workflow.history import verify

    if export_file is not None:  # away from the server: no database, no configuration, no encryption key
        try:
            key = load_public_key(public_key_file) if public_key_file is not None else None
            problems, notes = verify_export(read(export_file), key)
        except ProofError as exc:
            fail(str(exc))
        for problem in problems:
            click.echo(f"BROKEN: {problem}", err=True)
        for note in notes:
            click.echo(note)
        if problems:
            click.echo(f"{export_file}: NOT verified: {len(problems)} problem(s)", err=True)
            sys.exit(1)
        click.echo(f"{export_file}: history verified")
        return
    if (checkpoint_file is None) != (public_key_file is None):
        fail("--checkpoint and --public-key go together: the checkpoint, and the key it was signed with", code=2)
    document: dict[str, Any] | None = None
    if checkpoint_file is not None and public_key_file is not None:
        try:
            document = read(checkpoint_file)
            problems = check(document, load_public_key(public_key_file))
        except ProofError as exc:
            fail(str(exc))
        if problems:
            fail(f"{checkpoint_file}: {problems[0]}")
    rt = runtime(ctx)
    with rt.sessions() as session, progress_bar("checking history") as progress:
        report = verify(session, progress)
        log_report = verify_log(session)
        against = compare(session, document) if document is not None else []
    for problem in against:
        click.echo(f"BROKEN: {problem}", err=True)
    if document is not None and not against and not as_json:
        click.echo(f"checkpoint of {document['made_at']} holds: {document['chains']['count']} cases, ledger entry "
                   f"{document['ledger']['seq']}")
    if as_json:
        click.echo(json.dumps({"ok": report.ok and log_report.ok and not against, "instances": report.instances,
                               **({"checkpoint": {"made_at": document["made_at"], "problems": against}}
                                  if document is not None else {}),
                               "events": report.events,
                               "findings": [{"what": f.what, "instance": f.instance_id, "seq": f.seq,
                                             "message": f.message} for f in report.findings],
                               "access_log": {"ok": log_report.ok, "entries": log_report.entries,
                                              "sealed_days": log_report.days, "problems": log_report.problems}},
                              indent=2))
    else:
        if report.ok:
            click.echo(f"history verified: {report.instances} cases, {report.events} events, no broken links")
        else:
            for finding in report.findings:
                click.echo(f"BROKEN: {finding.message}", err=True)
            click.echo(f"history NOT verified: {len(report.findings)} problem(s) in {report.instances} cases, "
                       f"{report.events} events", err=True)
        if log_report.ok:
            click.echo(f"access log verified: {log_report.entries} entries, {log_report.days} sealed days, "
                       "no broken links")
        else:
            for problem in log_report.problems:
                click.echo(f"BROKEN: {problem}", err=True)
            click.echo(f"access log NOT verified: {len(log_report.problems)} problem(s) in {log_report.entries} "
                       f"entries, {log_report.days} sealed days", err=True)
    if not (report.ok and log_report.ok) or against:
        if against and not as_json:
            click.echo(f"checkpoint NOT held: {len(against)} problem(s)", err=True)
        sys.exit(1)


@audit.command("log")
@click.option("--kind", type=click.Choice(sorted(KINDS)), help="Only entries of this kind.")
@click.option("--person", "person_email", help="E-mail of a person who acted or was acted on.")
@click.option("--case", "reference", help="Only entries about this case (its reference).")
@click.option("--from", "since", type=click.DateTime(["%Y-%m-%d"]), help="From this UK day (2026-03-02).")
@click.option("--to", "until", type=click.DateTime(["%Y-%m-%d"]), help="To this UK day, included.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="At most this many (text).")
@click.option("--format", "fmt", type=click.Choice(["text", "csv"]), default="text", show_default=True,
              help="csv: every matching entry, header first; recorded in the log as an export.")
@click.pass_context
def audit_log(ctx: click.Context, kind: str | None, person_email: str | None, reference: str | None,
              since: datetime | None, until: datetime | None, limit: int, fmt: str) -> None:
    """List access-log entries, newest first (the operator sees them all)."""
    from reprisals.access_review import LogFilters, all_entries, find_case, list_entries, record_export, to_csv

    rt = runtime(ctx)
    with rt.transaction() as session:
        person_id = None
        if person_email:
            person = session.scalars(select(User).where(User.email == normalise_email(person_email))).one_or_none()
            if person is None:
                raise InvalidInput({"--person": f"no user has the e-mail {person_email}"})
            person_id = person.id
        try:
            case_id = find_case(session, None, reference) if reference else None
        except InvalidInput as exc:
            raise InvalidInput({"--case": exc.errors["case"]}) from None
        filters = LogFilters(kind=kind, person_id=person_id, case_id=case_id,
                             case_reference=reference.strip().upper() if reference else None,
                             since=since.date() if since else None, until=until.date() if until else None)
        if filters.since and filters.until and filters.until < filters.since:
            raise InvalidInput({"--to": "must be the same day as --from or after it"})
        if fmt == "csv":
            text, count = to_csv(all_entries(session, None, filters))
            record_export(session, rt.clock.now(), None, filters, count, via="cli")
        else:
            page = list_entries(session, None, filters, limit=limit)
    if fmt == "csv":
        click.echo(text, nl=False)
        return
    for row in page.rows:
        about = "; ".join(x for x in (f"on {row.subject}" if row.subject else "", row.case_reference or "",
                                      row.detail) if x)
        click.echo(f"{row.uk_time}  {row.what} — {row.actor} ({row.via.lower()})" + (f": {about}" if about else ""))
    shown = len(page.rows)
    more = f"more than {page.total:,}" if page.capped else f"{page.total:,}"
    click.echo(f"{shown} of {more} entries shown, newest first" if page.total else "no entries match")


# -- keys -----------------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Encryption keys for identity."""


@keys.command("generate")
@click.option("--signing", is_flag=True, help="An Ed25519 key pair that signs audit checkpoints, written to --out.")
@click.option("--pseudonym", is_flag=True, help="A key for REPRISALS_PSEUDONYM_KEY (the pseudonyms' keyed hash).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="With --signing: the folder for audit-signing.key (private) and audit-signing.pub.")
def keys_generate(signing: bool, pseudonym: bool, out_dir: Path | None) -> None:
    """Print a new encryption key (put it FIRST in REPRISALS_ENCRYPTION_KEYS, then run `reprisals keys rotate`),
    with --pseudonym a key for REPRISALS_PSEUDONYM_KEY, or with --signing write a checkpoint signing key pair."""
    if signing and pseudonym:
        fail("choose one of --signing and --pseudonym")
    if pseudonym:
        if out_dir is not None:
            fail("--out goes with --signing (a pseudonym key is printed, for the environment)")
        import secrets

        click.echo(secrets.token_urlsafe(32))
        return
    if not signing:
        if out_dir is not None:
            fail("--out goes with --signing (an encryption key is printed, for the environment)")
        click.echo(generate_key())
        return
    from reprisals.proof import ProofError, generate_signing_keys

    if out_dir is None:
        fail("--signing needs --out DIR: the folder to write the key pair to")
    try:
        private, public = generate_signing_keys(out_dir)
    except (ProofError, OSError) as exc:
        fail(str(exc))
    click.echo(f"private key: {private} (readable by you only: point REPRISALS_AUDIT_SIGNING_KEY_FILE at it; "
               "never put it in the database)")
    click.echo(f"public key: {public} (publish it: auditors check checkpoints with it)")


@keys.command("rotate")
@click.pass_context
def keys_rotate(ctx: click.Context) -> None:
    """Re-wrap every case's data key (and the reports being written) with the first key; afterwards the
    others can be removed. What each case key sealed does not change."""
    from reprisals.access_log import record
    from reprisals.services import rotate_keys

    rt = runtime(ctx)
    with rt.transaction() as session, progress_bar("re-wrapping case keys") as progress:
        changed = rotate_keys(session, rt.cipher, progress)
        record(session, rt.clock.now(), "keys_rotated", via="cli", detail={"keys_rewrapped": changed})
    click.echo(f"re-wrapped {changed} key(s) or draft(s) with the first key")


# -- serving --------------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--reload", "reload_", is_flag=True, help="Restart on code changes (the scheduler runs once).")
@click.pass_context
def run(ctx: click.Context, host: str, port: int, reload_: bool) -> None:
    """Development: web server and scheduler in one process."""
    from web.app import create_app
    from web.scheduler import start_in_process

    rt = runtime(ctx, warn=True)
    app = create_app(runtime=rt)
    scheduler = start_in_process(rt, reloader=reload_)
    click.echo(f"serving on http://{host}:{port}/ (Ctrl-C to stop)"
               + ("; deadline scheduler running in this process" if scheduler else ""))
    try:
        app.run(host=host, port=port, debug=False, use_reloader=reload_)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=True)


@cli.command()
@click.pass_context
def scheduler(ctx: click.Context) -> None:
    """Run the deadline sweep and outbox delivery until SIGTERM (production: its own process)."""
    from web.scheduler import run_blocking

    run_blocking(runtime(ctx, warn=True))


# -- deadlines ------------------------------------------------------------------------------------


@cli.group()
def deadlines() -> None:
    """Deadlines, reminders and escalation."""


@deadlines.command("dispatch")
@click.option("--now", "now_text", help="Sweep as of this ISO-8601 time (default: the clock).")
@click.pass_context
def deadlines_dispatch(ctx: click.Context, now_text: str | None) -> None:
    """Run one sweep: every timer due by then fires once (reminders, overdue notices, prompts)."""
    from web.scheduler import run_sweep
    from workflow.deadlines import parse_iso_time

    now = parse_iso_time(now_text) if now_text else None
    rt = runtime(ctx)
    result = run_sweep(rt, now)
    late = f"; lateness max {max(result.lateness_ms) / 1000:.0f} s" if result.lateness_ms else ""
    click.echo(f"sweep: {result.fired} fired, {result.failed} failed, {result.skipped} skipped{late}")
    if result.failed:
        sys.exit(1)


@deadlines.command("list")
@click.option("--due-before", help="Only deadlines due before this ISO-8601 time.")
@click.option("--overdue", is_flag=True, help="Only deadlines that have passed.")
@click.option("--case", "reference", help="Only this case's deadlines (its reference, RPR-…).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def deadlines_list(ctx: click.Context, due_before: str | None, overdue: bool, reference: str | None,
                   as_json: bool) -> None:
    """Running deadlines, soonest first."""
    from reprisals.deadlines import list_deadlines, local_text
    from workflow.deadlines import parse_iso_time

    before = parse_iso_time(due_before) if due_before else None
    rt = runtime(ctx)
    with rt.sessions() as session:
        only = None
        if reference is not None:
            from reprisals.models import Case

            only = session.scalars(select(Case).where(Case.reference == reference.strip().upper())).one_or_none()
            if only is None:
                fail(f"there is no case {reference.strip().upper()}")
        rows = [{"reference": d.reference, "deadline": d.deadline.name, "label": d.deadline.label,
                 "stage": d.deadline.stage, "due_at": d.deadline.due_at, "status": d.deadline.status}
                for d in list_deadlines(session, due_before=before, overdue=overdue, case=only)]

    def human(items: list[dict[str, Any]]) -> None:
        if not items:
            click.echo("no running deadlines match")
        for r in items:
            click.echo(f"{r['reference']:<15} {r['status']:<8} {local_text(r['due_at']):<24} {r['label']}")

    _emit(rows, as_json, human)


def _deadline_op(ctx: click.Context, reference: str, as_email: str, op: str, **kwargs: Any) -> None:
    from reprisals import deadlines as dl
    from reprisals.services import get_case

    rt = runtime(ctx)
    with rt.transaction() as session:
        user = _user(session, as_email)
        c = get_case(session, user, reference.strip().upper())
        _about_case(rt, user, c)
        now = rt.clock.now()
        if op == "extend":
            row = dl.extend_deadline(session, rt.engine, rt.timers, user, c, now=now, **kwargs)
        elif op == "pause":
            row = dl.pause_deadline(session, rt.engine, rt.timers, user, c, now=now, **kwargs)
        else:
            row = dl.resume_deadline(session, rt.engine, rt.timers, user, c, now=now, **kwargs)
        click.echo(f"{c.reference}: {row.label} is {row.status}, due {dl.local_text(row.due_at)}")


@deadlines.command("extend")
@click.argument("reference")
@click.argument("deadline")
@click.option("--to", "to_text", required=True,
              help="New due time, ISO-8601 (UK time unless it has an offset); a working day for a deadline "
                   "counted in working days.")
@click.option("--reason", required=True)
@click.option("--as", "as_email", required=True)
@click.pass_context
def deadlines_extend(ctx: click.Context, reference: str, deadline: str, to_text: str, reason: str,
                     as_email: str) -> None:
    """Move a running deadline later (leads), with a reason."""
    from workflow.deadlines import parse_iso_time

    _deadline_op(ctx, reference, as_email, "extend", name=deadline, new_due=parse_iso_time(to_text), reason=reason)


@deadlines.command("pause")
@click.argument("reference")
@click.argument("deadline")
@click.option("--reason", required=True)
@click.option("--as", "as_email", required=True)
@click.pass_context
def deadlines_pause(ctx: click.Context, reference: str, deadline: str, reason: str, as_email: str) -> None:
    """Stop a deadline's clock (leads), with a reason."""
    _deadline_op(ctx, reference, as_email, "pause", name=deadline, reason=reason)


@deadlines.command("resume")
@click.argument("reference")
@click.argument("deadline")
@click.option("--reason", default="", help="Why the clock restarts.")
@click.option("--as", "as_email", required=True)
@click.pass_context
def deadlines_resume(ctx: click.Context, reference: str, deadline: str, reason: str, as_email: str) -> None:
    """Restart a paused clock; the due time moves by the time it was paused."""
    _deadline_op(ctx, reference, as_email, "resume", name=deadline, reason=reason)


# -- reports ----------------------------------------------------------------------------------------


@cli.group()
def report() -> None:
    """Figures for annual reports (counts only, never a case or a person)."""


@report.command("figures")
@click.option("--period", required=True, help="2025 (a year), 2025-26 (a financial year) or 2025-04-01..2025-09-30.")
@click.option("--body", "body_code", default=None, help="One body's cases (IMB, HMIP, PPO, LO); default all.")
@click.option("--publish", is_flag=True, help="Suppress counts under 5, as published statistics must.")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "json"]), default="text", show_default=True)
@click.pass_context
def report_figures(ctx: click.Context, period: str, body_code: str | None, publish: bool, fmt: str) -> None:
    """Cases received and closed in a period, by kind of sanction, risk, channel, age group, establishment,
    nation and outcome, and the protocol's deadlines met and missed."""
    from reprisals.reports import figures, parse_period, shown_count, to_csv

    rt = runtime(ctx)
    chosen = parse_period(period)
    with rt.sessions() as session:
        result = figures(session, chosen, body_code.upper() if body_code else None, now=rt.clock.now())
    received, closed = shown_count(result.received, publish), shown_count(result.closed, publish)
    if fmt in ("csv", "json"):  # a copy that leaves the service: an export, as the page's CSV download is
        from reprisals.access_log import record

        with rt.transaction() as session:
            record(session, rt.clock.now(), "export", via="cli",
                   detail={"what": "figures", "period": chosen.label, "body": result.body.code if result.body else
                           "all", "counts": "for publication" if publish else "exact", "format": fmt})
    if fmt == "csv":
        click.echo(to_csv(result, publish=publish), nl=False)
        return
    if fmt == "json":
        click.echo(json.dumps({
            "period": {"start": chosen.start.isoformat(), "end": chosen.end.isoformat(), "label": chosen.label},
            "body": result.body.code if result.body else None, "published": publish,
            "tables": [{"key": t.key, "title": t.title, "total": t.total_shown(publish) or None,
                        "rows": [{"label": label, "count": shown} for label, _, shown in t.shown(publish)]}
                       for t in result.tables],
            "received": received, "closed": closed}, indent=2))
        return
    counts = "for publication: counts under 5 suppressed" if publish else "exact counts: not for publication"
    click.echo(f"Figures for {chosen.label}, {result.body.name if result.body else 'all bodies'} ({counts})")
    click.echo(f"  cases received: {received}; closed: {closed}")
    for table in result.tables:
        click.echo(f"\n{table.title}" + (f" (total {table.total_shown(publish)})" if table.total is not None else ""))
        for label, _, shown in table.shown(publish):
            click.echo(f"  {label:<40} {shown:>14}")


from web import cli_reference  # noqa: E402,F401  (bodies, establishments, tokens: their own module)


def main() -> None:
    cli(prog_name="reprisals")
