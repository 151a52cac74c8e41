"""Operations on cases. Each takes the session, the acting user and ``now``; each flushes and
never commits (the request, CLI command or sweep item owns the transaction). Every change goes
through the engine, so it is in the case's hash-chained history.

No identity goes into history, logs or exceptions: history records *that* identity was viewed and
why, notes are stored as ciphertext and history records only that one was added.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, object_session

from reprisals.access import CaseActor, actor_for, can_view_case, can_view_identity, is_owning_lead, visible_cases
from reprisals.crypto import Cipher
from reprisals.errors import CaseNotFound, InvalidInput, NotAllowed
from reprisals.messaging import Messenger
from reprisals.models import (
    BODY_ROLES,
    AgeGroup,
    Body,
    Case,
    CaseContact,
    CaseNote,
    CaseParty,
    CaseSequence,
    Channel,
    Consent,
    Detainee,
    Establishment,
    Outcome,
    Risk,
    Role,
    SanctionType,
    User,
)
from reprisals.protocol import CONSENT_RANK, SECOND_LEAD_OUTCOMES, SPEC_KEY, kind_of
from reprisals.protocol_store import active_version
from reprisals.pseudonyms import link_person
from reprisals.sealing import HOST_SEALED, SEALED, Keyring, keyring_of, rewrap_keys
from reprisals.two_factor import rotate_secrets
from workflow.clock import ensure_utc
from workflow.deadlines import Timers
from workflow.engine import Engine, Offer
from workflow.errors import GuardFailed, MissingFields
from workflow.models import HistoryEvent, WorkflowInstance
from workflow.moments import NEEDS_TIME, local_words, on_day, parse_moment
from workflow.spec import FieldType
from workflow.text import DATE_FUTURE, clean_text, date_problem, datetime_problem, is_blank, shown, storage_problem

LONDON = ZoneInfo("Europe/London")
MAX_TEXT = 10_000
MAX_ROW_ID = 2**31 - 1  # INTEGER primary keys


@dataclass(frozen=True)
class Identity:
    name: str
    number: str | None
    date_of_birth: str | None


# -- references --------------------------------------------------------------------------------


def next_reference(session: Session, year: int) -> str:
    """Allocate ``RPR-<year>-<sequence>``. The counter row is incremented with an upsert that holds
    its row lock until commit, so concurrent openings queue: no duplicates, and a rolled-back
    opening gives its number back (no gaps)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(CaseSequence)
        .values(year=year, last=1)
        .on_conflict_do_update(index_elements=[CaseSequence.year], set_={"last": CaseSequence.last + 1})
        .returning(CaseSequence.last)
    )
    number = session.execute(stmt).scalar_one()
    return f"RPR-{year}-{number:04d}"


# -- validation helpers ---------------------------------------------------------------------------


def _choice(errors: dict[str, str], data: Mapping[str, Any], name: str, enum: type[Any],
            required: bool = True) -> Any:
    value = data.get(name)
    if value in (None, ""):
        if required:
            errors[name] = "is required"
        return None
    try:
        return enum(value)
    except ValueError:
        errors[name] = f"must be one of: {', '.join(m.value for m in enum)}"
        return None


def _text(errors: dict[str, str], data: Mapping[str, Any], name: str, required: bool = True,
          max_length: int = MAX_TEXT, multiline: bool = True) -> str | None:
    """Text as stored (``workflow.text.clean_text``): refused if it cannot be stored or holds control
    characters (or, when ``multiline`` is false, a line break); text that shows nothing is no text."""
    value = data.get(name)
    if value is None:
        if required:
            errors[name] = "is required"
        return None
    if not isinstance(value, str):
        errors[name] = "must be text"
        return None
    try:
        clean = clean_text(value, multiline=multiline)
    except ValueError as exc:
        errors[name] = str(exc)
        return None
    if is_blank(clean):
        if required:
            errors[name] = "is required"
        return None
    if len(clean) > max_length:
        errors[name] = f"must be {max_length} characters or fewer"
        return None
    return clean


DATE_FORM = "must be a real date in the form YYYY-MM-DD"
DATETIME_FORM = "must be a date and time, like 2025-04-16T09:30 (UK time unless it has an offset)"


def _date(errors: dict[str, str], data: Mapping[str, Any], name: str, required: bool = True,
          not_after: date | None = None) -> date | None:
    """A date given as ``YYYY-MM-DD`` text (or a date): never a number, which ``fromisoformat`` would
    read (20250416); between 1900 and 2100, and not after ``not_after`` (today, for things that happened)."""
    value = data.get(name)
    if value in (None, ""):
        if required:
            errors[name] = "is required"
        return None
    parsed: date | None = None
    if isinstance(value, date) and not isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = date.fromisoformat(value.strip())
    if parsed is None:
        errors[name] = DATE_FORM
        return None
    problem = date_problem(parsed, not_after=not_after)
    if problem:
        errors[name] = problem
        return None
    return parsed


def _list(errors: dict[str, str], data: Mapping[str, Any], name: str) -> list[Any]:
    """A multi-valued field: absent is empty, one value is a list of one, anything else is an error."""
    value = data.get(name)
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    errors[name] = "must be a list"
    return []


def _row_id(value: Any) -> int | None:
    """A row id given as a whole number, or None when it is not one. Never coerced: ``true`` (which
    Python takes for 1), ``"1"``, ``1.0`` are not ids. Out-of-range numbers are None too: the
    database would refuse them with an error instead of "not found"."""
    if type(value) is int and 1 <= value <= MAX_ROW_ID:
        return value
    return None


def _datetime(errors: dict[str, str], data: Mapping[str, Any], name: str, now: datetime) -> datetime | None:
    """A moment given as ISO text (or a datetime): UK local time without an offset; never a number
    (seconds since 1970 are not how a person gives a time); 1900 to now."""
    value = data.get(name)
    if value in (None, ""):
        errors[name] = "is required"
        return None
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value.strip())
    if parsed is None:
        errors[name] = DATETIME_FORM
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=LONDON)  # people give UK local times
    problem = datetime_problem(parsed, not_after=now)  # before any conversion: year 1 would overflow
    if problem:
        errors[name] = problem
        return None
    return ensure_utc(parsed)


# -- opening ------------------------------------------------------------------------------------


def open_case(session: Session, engine: Engine, cipher: Cipher, actor: User, now: datetime,
              data: Mapping[str, Any], *, messenger: Messenger | None = None,
              spec_version: int | None = None) -> Case:
    """Record a reported concern: validate everything first (nothing is written on bad input),
    allocate the reference, start the workflow, store identity encrypted and bound to the case. A member
    of staff assigned by someone else is told (in-app, and by e-mail) if a messenger is given. The case
    runs on ``spec_version`` if given, else on the version an admin activated, else the newest."""
    now = ensure_utc(now)
    if not actor.active or actor.role not in BODY_ROLES or actor.body_code is None:
        raise NotAllowed("only staff and leads of a body can report a concern")
    if actor.pending:
        raise NotAllowed(f"your account is waiting for a lead of {actor.body_code} to confirm it; until then "
                         "you cannot report a concern")
    errors: dict[str, str] = {}
    known = {"establishment_id", "received_at", "channel", "original_contact_date", "age_group",
             "sanction_types", "detriment_dates", "description", "risk", "party_bodies", "detainee_name",
             "detainee_number", "detainee_date_of_birth", "assigned_user_id", "linked_case"}
    for name in data:
        if name not in known:
            errors[shown(name)] = "is not a field of a new case"
    today = now.astimezone(LONDON).date()
    establishment = None
    est_id = data.get("establishment_id")
    if est_id in (None, ""):
        errors["establishment_id"] = "is required"
    elif (row_id := _row_id(est_id)) is None:
        errors["establishment_id"] = "must be the id of an establishment: a whole number, such as 12"
    else:
        establishment = session.get(Establishment, row_id)
        if establishment is None or not establishment.active:
            errors["establishment_id"] = "is not a known establishment"
    received_at = _datetime(errors, data, "received_at", now)
    channel = _choice(errors, data, "channel", Channel)
    contact_date = _date(errors, data, "original_contact_date", required=False, not_after=today)
    age_group = _choice(errors, data, "age_group", AgeGroup)
    risk = _choice(errors, data, "risk", Risk)
    description = _text(errors, data, "description")
    person_name = _text(errors, data, "detainee_name", max_length=200, multiline=False)
    number = _text(errors, data, "detainee_number", required=False, max_length=40, multiline=False)
    dob = _date(errors, data, "detainee_date_of_birth", required=False, not_after=today)
    sanctions_raw = _list(errors, data, "sanction_types")
    sanctions: list[str] = []
    if not sanctions_raw:
        errors.setdefault("sanction_types", "choose at least one")
    else:
        for s in sanctions_raw:
            try:
                sanctions.append(SanctionType(s).value)
            except (ValueError, TypeError):
                errors["sanction_types"] = f"'{shown(s)}' is not a sanction type"
    detriment: list[str] = []
    for i, d in enumerate(_list(errors, data, "detriment_dates")):
        parsed = _date(errors, {f"detriment_dates[{i}]": d}, f"detriment_dates[{i}]", not_after=today)
        if parsed:
            detriment.append(parsed.isoformat())
    parties: list[str] = []
    for code in _list(errors, data, "party_bodies"):
        # Text that cannot be stored is not looked up: the database driver would fail on it.
        if not isinstance(code, str) or storage_problem(code) or len(code) > 16 or session.get(Body, code) is None:
            errors["party_bodies"] = f"'{shown(code)}' is not a body"
        elif code != actor.body_code:
            parties.append(code)
    assignee = None
    if data.get("assigned_user_id") not in (None, ""):
        user_id = _row_id(data["assigned_user_id"])
        assignee = session.get(User, user_id) if user_id is not None else None
        if user_id is None:
            errors["assigned_user_id"] = "must be the id of a user: a whole number, such as 12"
        elif assignee is None:
            errors["assigned_user_id"] = "is not a user"
        elif (problem := assignee_problem(assignee, actor.body_code)) is not None:
            errors["assigned_user_id"] = problem
    if contact_date and received_at and contact_date > received_at.astimezone(LONDON).date():
        errors["original_contact_date"] = "cannot be after the concern was received"
    earlier = _linked_case(session, actor, errors, data.get("linked_case"))
    if errors:
        raise InvalidInput(errors)
    assert establishment is not None and received_at is not None and person_name is not None
    assert description is not None and risk is not None

    year = now.astimezone(LONDON).year
    reference = next_reference(session, year)
    instance = engine.start(
        session, SPEC_KEY, CaseActor(str(actor.id), frozenset()), now, occurred_at=received_at,
        version=spec_version or active_version(session, engine, SPEC_KEY),
        variables={"received_at": received_at.isoformat(), "triage_from": received_at.isoformat(),
                   "risk": risk.value, "escalation_level": 0,
                   # Facts the protocol's copy rules read (version 2).
                   "age_group": age_group.value if age_group else None,
                   "establishment_type": establishment.type.value},
        calendar=establishment.nation.value,
        data={"reference": reference, "owning_body": actor.body_code, "establishment": establishment.id,
              "risk": risk.value, "channel": channel.value if channel else None,
              **({"linked_case": earlier.reference} if earlier is not None else {})},
    )
    case = Case(
        reference=reference, instance=instance, owning_body_code=actor.body_code,
        establishment_id=establishment.id, receiving_user_id=actor.id,
        assigned_user_id=(assignee.id if assignee else (actor.id if actor.role is Role.STAFF else None)),
        received_at=received_at, channel=channel, original_contact_date=contact_date, age_group=age_group,
        sanction_types=sorted(set(sanctions)), detriment_dates=detriment, description_ciphertext="",
        risk=risk, created_at=now, current_stage=instance.stage,
        linked_case_id=earlier.id if earlier is not None else None,
    )
    case.parties = [CaseParty(body_code=c) for c in sorted(set(parties))]
    session.add(case)
    session.flush()
    # The case's own key (envelope encryption, reprisals.sealing): identity, description, notes and the free
    # text of its history are sealed with it. The report's draft, sealed to the session, is deleted with it.
    key = Keyring(cipher).for_instance(session, instance.id, create_at=now)
    case.description_ciphertext = key.encrypt(f"case:{case.id}:description", description)
    case.detainee = Detainee(
        case_id=case.id,
        name_ciphertext=key.encrypt(f"detainee:{case.id}:name", person_name),
        number_ciphertext=key.encrypt(f"detainee:{case.id}:number", number) if number else None,
        date_of_birth_ciphertext=(key.encrypt(f"detainee:{case.id}:date_of_birth", dob.isoformat())
                                  if dob else None),
    )
    session.flush()
    if cipher.pseudonym_key is not None:  # the person's pseudonym (reprisals.pseudonyms)
        link_person(session, cipher.pseudonym_key, case, person_name, dob, number, now)
    if earlier is not None:  # both histories say it: the new case's first event, and this one
        engine.append_event(session, earlier.instance, "case_linked", str(actor.id), now,
                            {"linked_case": reference})
    if messenger is not None:
        if assignee is not None and assignee.id != actor.id:
            messenger.case_assigned(session, case, assignee, actor, now)
        messenger.party_case_opened(session, case, now)
    return case


LINKED_CASE_UNSEEN = "is not a case you can see: give the reference of an earlier case, such as RPR-2025-0001"
REFERENCE_SHAPE = re.compile(r"RPR-[0-9]{4}-[0-9]{4,6}")


def _linked_case(session: Session, actor: User, errors: dict[str, str], value: Any) -> Case | None:
    """The earlier case a new case is opened from (``linked_case``: its reference), if the actor may see
    it. A case they may not see is refused exactly like one that does not exist."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        errors["linked_case"] = "must be a case reference, such as RPR-2025-0001"
        return None
    reference = value.strip().upper()
    earlier = None
    if REFERENCE_SHAPE.fullmatch(reference):  # nothing else is looked up: text the driver cannot take
        earlier = session.scalars(select(Case).where(Case.reference == reference)).one_or_none()
    if earlier is None or not can_view_case(actor, earlier):
        errors["linked_case"] = LINKED_CASE_UNSEEN
        return None
    return earlier


@dataclass(frozen=True)
class Links:
    """A case's links that the viewer may see: the case it was opened from, and those opened from it."""

    linked_to: Case | None
    linked_from: list[Case]


def linked_cases(session: Session, viewer: User, case: Case) -> Links:
    """The cases linked to ``case`` both ways, only those ``viewer`` may see (a reference they may not see
    is not shown: its existence is not revealed). Those opened from it oldest first."""
    earlier = case.linked_case
    later = session.scalars(visible_cases(viewer).where(Case.linked_case_id == case.id).order_by(Case.id))
    return Links(earlier if earlier is not None and can_view_case(viewer, earlier) else None, list(later))


def assignee_problem(user: User, owning: str) -> str | None:
    """Why ``user`` cannot be assigned a case the body ``owning`` owns, or None. Only the owning body's own
    active staff and leads, confirmed by a lead (decision 22): the assignee sees identity, which a party
    body's people never do."""
    if user.body_code != owning:
        return (f"must be someone of {owning}, the body that owns the case (people of another body, even one "
                "on the case, cannot be assigned)")
    if not user.active or user.role not in BODY_ROLES:
        return f"must be an active member of staff or lead of {owning}"
    if user.pending:
        return f"must be someone whose account a lead of {owning} has confirmed"
    return None


def assignable_users(session: Session, owning: str) -> list[User]:
    """Everyone a case of the body ``owning`` can be assigned to (``assignee_problem`` is None), by name."""
    return list(session.scalars(
        select(User).where(User.active.is_(True), User.role.in_(BODY_ROLES), User.body_code == owning,
                           User.confirmed_at.is_not(None)).order_by(User.name, User.id)))


# -- reading ------------------------------------------------------------------------------------


def get_case(session: Session, user: User, reference: str) -> Case:
    """The case, if the user may see it; otherwise CaseNotFound (never reveal existence)."""
    case = session.scalars(select(Case).where(Case.reference == reference)).one_or_none()
    if case is None or not can_view_case(user, case):
        raise CaseNotFound(reference)
    return case


def get_case_history(session: Session, engine: Engine, case: Case) -> list[HistoryEvent]:
    return engine.history(session, case.instance)


# -- advancing ----------------------------------------------------------------------------------


# Version 1's date fields that say when its action happened (the letter was sent, the response received…).
# They are the action's moment under another name: given alone, the moment is taken from them; given with
# a moment, they must be its date; absent, they are filled from it. Version 2 has no such fields.
MOMENT_FIELDS = ("sent_on", "received_on", "contacted_on", "left_on", "consent_date")


def action_moment(engine: Engine, case: Case, trigger: str, fields: Mapping[str, Any] | None,
                  occurred_at: object, now: datetime) -> tuple[datetime, dict[str, Any], dict[str, str]]:
    """When an action on ``case`` happened, as given (``workflow.moments.parse_moment``: UK time unless an
    offset is given; a bare date is that day, at the previous action's moment if that was on the same day,
    else 12:00; an urgent case needs a time), or ``now``. Returns the moment, the fields with version 1's
    date fields reconciled with it (``MOMENT_FIELDS``), and the problems found, by field."""
    instance = case.instance
    clean = dict(fields or {})
    errors: dict[str, str] = {}
    previous = instance.acted_at or instance.stage_entered_at
    urgent = instance.variables.get("risk") == Risk.URGENT.value
    moment: datetime | None = None
    if occurred_at not in (None, ""):
        try:
            moment = parse_moment(occurred_at, same_day=previous, now=now, needs_time=urgent)
        except ValueError as exc:
            errors["occurred_at"] = str(exc)
    spec = engine.spec_of(instance)
    trig = spec.triggers.get(trigger) if isinstance(trigger, str) else None
    for name in MOMENT_FIELDS:
        if trig is None or name not in trig.fields or trig.fields[name].type is not FieldType.DATE:
            continue
        given = clean.get(name)
        day = _iso_date(given)
        if given in (None, ""):
            # From the moment; with none (or one refused, so that only the moment is reported), today.
            clean[name] = (moment or now).astimezone(LONDON).date().isoformat()
        elif day is None:
            continue  # the engine names the problem with the field
        elif day > now.astimezone(LONDON).date():
            errors[name] = DATE_FUTURE  # what happened cannot be in the future
        elif moment is not None:
            if day != moment.astimezone(LONDON).date():
                errors[name] = (f"must be the day the action happened ({moment.astimezone(LONDON):%d %B %Y}); "
                                "leave it out, or give the same day")
        elif "occurred_at" not in errors:
            if day == now.astimezone(LONDON).date():
                moment = now
            elif urgent:
                errors["occurred_at"] = NEEDS_TIME
            else:
                try:
                    moment = on_day(day, same_day=previous, now=now)
                except ValueError as exc:
                    errors[name] = str(exc)
    return moment or now, clean, errors


def _iso_date(value: object) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return date.fromisoformat(value.strip())
    return None


def advance_case(session: Session, engine: Engine, actor: User, case: Case, trigger: str,
                 fields: Mapping[str, Any] | None, now: datetime, *,
                 expected_version: int | None = None, occurred_at: object = None,
                 messenger: Messenger | None = None) -> HistoryEvent:
    """Fire a protocol trigger on a case and record its domain facts in the same transaction. With a
    messenger, the party bodies' leads are told when it closes, and the owning body's other leads when a
    finding that needs a second lead is proposed.

    ``now`` is when it is recorded; ``occurred_at`` when it happened (see :func:`action_moment`): its
    deadlines, the reopen window and ``closed_at`` run from that moment."""
    now = ensure_utc(now)
    keys = keyring_of(engine)  # before anything: typed text is never recorded in the clear
    if not can_view_case(actor, case):
        raise CaseNotFound(case.reference)
    instance = case.instance
    cactor = actor_for(actor, case)
    moment, fields, problems = action_moment(engine, case, trigger, fields, occurred_at, now)
    if problems:
        # Every problem at once: the fields' own, with the moment's.
        try:
            engine.check(instance, trigger, cactor, fields, now, expected_version=expected_version)
        except MissingFields as exc:
            raise MissingFields(exc.trigger, {**exc.errors, **problems}) from None
        except GuardFailed:
            pass  # the fields' problems first: the guard may pass once they are put right
        raise MissingFields(str(trigger), problems)
    host_vars: dict[str, Any] = {}
    spec = engine.spec_of(instance)
    kind = kind_of(spec, trigger)  # what the protocol file says this trigger means
    if kind == "escalation":
        host_vars["escalation_level"] = int(instance.variables.get("escalation_level") or 0) + 1
    elif kind == "finding":
        host_vars["finding_proposed_by"] = cactor.id
    elif kind in ("reopen", "retriage"):
        host_vars["triage_from"] = moment.isoformat()  # back in triage: a new triage deadline
    elif kind == "consent_change" and isinstance(fields, Mapping):
        # Narrowed or withdrawn: nothing more is disclosed without an override; given again in full: lifted.
        new, old = fields.get("consent"), instance.variables.get("consent")
        if new in CONSENT_RANK and old in CONSENT_RANK:
            host_vars["consent_lowered"] = (CONSENT_RANK[new] < CONSENT_RANK[old]
                                            or (bool(instance.variables.get("consent_lowered")) and new != "full"))
    trig = spec.triggers.get(trigger) if isinstance(trigger, str) else None
    if trig is not None and trig.dest is not None and spec.stages[trig.dest].final:
        host_vars["closed_at"] = moment.isoformat()
    event = engine.fire(session, instance, trigger, cactor, fields, now,
                        expected_version=expected_version, variables=host_vars, occurred_at=moment)
    typed = trig is not None and "recipient" in trig.fields and trig.fields["recipient"].is_sensitive  # version 1
    _sync_case(session, keys, case, instance, event, actor, moment, kind, typed_recipient=typed)
    session.flush()
    if messenger is not None:
        if case.closed_at is not None and case.outcome is not None:
            messenger.party_case_closed(session, case, now)
        elif kind == "finding" and instance.variables.get("proposed_finding") in SECOND_LEAD_OUTCOMES:
            messenger.finding_to_confirm(session, case, actor, str(instance.variables["proposed_finding"]), now)
    return event


PROTOCOL_KINDS = ("created", "transition")


def occurred_at_of(event: HistoryEvent, corrections: Mapping[int, datetime] | None = None) -> datetime:
    """When an event's action happened (decision 17): as corrected, else the moment it records, else
    when it was recorded."""
    if corrections and event.seq in corrections:
        return corrections[event.seq]
    text = event.data.get("occurred_at") if isinstance(event.data, dict) else None
    if isinstance(text, str):
        with contextlib.suppress(ValueError):
            return ensure_utc(datetime.fromisoformat(text))
    return ensure_utc(event.at)


def corrected_moments(events: list[HistoryEvent]) -> dict[int, datetime]:
    """The moments given by ``action_redated`` corrections, by the seq of the action they correct (the
    latest correction wins)."""
    out: dict[int, datetime] = {}
    for e in events:
        if e.kind == "action_redated" and e.corrects_seq is not None:
            out[e.corrects_seq] = ensure_utc(datetime.fromisoformat(e.data["corrected_to"]))
    return out


def redate_action(session: Session, engine: Engine, timers: Timers, actor: User, case: Case, seq: int,
                  occurred_at: object, reason: str | None, now: datetime) -> HistoryEvent:
    """Correct when an action happened (PROTOCOL rule 5: history is never edited, a correction points at
    what it corrects). A lead gives the right moment and a reason; the deadlines the action started are
    recomputed from it, and those it closed close at it. The moment must lie between the protocol actions
    before and after it (and not in the future, nor before receipt)."""
    now = ensure_utc(now)
    if not can_view_case(actor, case):
        raise CaseNotFound(case.reference)
    if "lead" not in actor_for(actor, case).roles:
        raise NotAllowed("only a lead of a body on this case can correct when an action happened")
    instance = case.instance
    events = engine.history(session, instance)
    corrections = corrected_moments(events)
    errors: dict[str, str] = {}
    target = next((e for e in events if e.seq == seq), None) if type(seq) is int else None
    if target is None or target.kind != "transition":
        errors["event"] = "is not an action of this case's history"
    clean_reason = _text(errors, {"reason": reason}, "reason", max_length=2000)
    moment: datetime | None = None
    if occurred_at in (None, ""):
        errors["occurred_at"] = "is required"
    else:
        # A bare date on the day of the action before it means that action's moment (as for a new action).
        prior = [occurred_at_of(e, corrections) for e in events if e.kind in PROTOCOL_KINDS and e.seq < seq]
        try:
            moment = parse_moment(occurred_at, now=now, same_day=max(prior) if prior else None,
                                  needs_time=instance.variables.get("risk") == Risk.URGENT.value)
        except ValueError as exc:
            errors["occurred_at"] = str(exc)
    if moment is not None and target is not None and target.kind == "transition":
        protocol = [e for e in events if e.kind in PROTOCOL_KINDS]
        before = [occurred_at_of(e, corrections) for e in protocol if e.seq < seq]
        after = [occurred_at_of(e, corrections) for e in protocol if e.seq > seq]
        if moment > now:
            errors["occurred_at"] = "must not be in the future"
        elif before and moment < max(before):
            errors["occurred_at"] = ("must not be before the action before it, which happened at "
                                     f"{local_words(max(before))}")
        elif after and moment > min(after):
            errors["occurred_at"] = ("must not be after the action after it, which happened at "
                                     f"{local_words(min(after))}")
    if errors:
        raise InvalidInput(errors)
    assert target is not None and moment is not None
    was = occurred_at_of(target, corrections)
    event = engine.append_event(session, instance, "action_redated", str(actor.id), now,
                                {"corrected_to": moment.isoformat(), "was": was.isoformat(), "reason": clean_reason},
                                corrects_seq=seq, sealed=HOST_SEALED["action_redated"])
    timers.redate(session, engine, instance, seq, was, moment, now)
    latest = max(e.seq for e in events if e.kind == "transition")
    if seq == latest:
        instance.stage_entered_at = moment
        instance.acted_at = moment
        variables = dict(instance.variables)
        for name in ("closed_at", "triage_from"):
            if variables.get(name) and ensure_utc(datetime.fromisoformat(variables[name])) == was:
                variables[name] = moment.isoformat()
        instance.variables = variables
        if case.closed_at is not None and ensure_utc(case.closed_at) == was:
            case.closed_at = moment
    for contact in session.scalars(select(CaseContact).where(CaseContact.case_id == case.id,
                                                             CaseContact.history_seq == seq)):
        contact.on = moment.astimezone(LONDON).date()
    session.flush()
    return event


def _sync_case(session: Session, keys: Keyring, case: Case, instance: WorkflowInstance, event: HistoryEvent,
               actor: User, moment: datetime, kind: str | None, *, typed_recipient: bool = False) -> None:
    """Mirror the facts the domain queries on (stage, risk, consent, outcome) from the instance."""
    v = instance.variables
    fields = event.plain_data.get("fields", {})  # as given: the stored data has its free text sealed
    case.current_stage = instance.stage
    if v.get("risk"):
        case.risk = Risk(v["risk"])
    if kind in ("consent", "consent_change"):
        case.consent = Consent(fields["consent"])
        if case.consent is not Consent.NONE:
            case.consent_override_reason = None  # consented now: the override's ground stays in history
        case.consent_date = (date.fromisoformat(fields["consent_date"]) if fields.get("consent_date")
                             else moment.astimezone(LONDON).date())
    # The latest override that disclosed (referral or escalation), beside consent 'none' (the row's check);
    # every override's ground is in its action's history.
    if kind in ("referral", "escalation") and fields.get("override_ground") and case.consent is Consent.NONE:
        # The ground (a protocol choice) as it is, the reason typed for it sealed with the case's key.
        case.consent_override_reason = (f"{fields['override_ground']}: "
                                        + keys.encrypt(session, instance.id, f"case:{case.id}:override",
                                                       fields["override_reason"]))
    if instance.stage == "closed":
        case.outcome = Outcome(v["outcome"])
        case.closed_at = moment
    elif case.closed_at is not None:
        case.outcome = None
        case.closed_at = None
    if kind in ("referral", "escalation", "response"):
        on = fields.get("sent_on") or fields.get("received_on") or moment.astimezone(LONDON).date().isoformat()
        recipients = list(fields.get("recipients") or [])
        if fields.get("recipient"):  # an escalation's: a central authority, or another named by hand (sealed)
            typed = (fields["recipient_other"] if fields["recipient"] == "other" and fields.get("recipient_other")
                     else fields["recipient"] if typed_recipient else None)
            recipients.append({SEALED: keys.encrypt(session, instance.id, f"contact:{event.seq}:recipient", typed)}
                              if typed else fields["recipient"])
        recipients += [c for c in fields.get("copies") or [] if c not in recipients]
        session.add(CaseContact(case_id=case.id, kind=kind, level=int(v.get("escalation_level") or 0),
                                recipients=recipients, on=date.fromisoformat(on), history_seq=event.seq,
                                by_user_id=actor.id))


def offered_actions(engine: Engine, user: User, case: Case, now: datetime) -> list[Offer]:
    """The actions to offer ``user`` on ``case`` now: stage, role and the guards that do not depend on what
    is typed allow them; those whose guards do are offered with their conditions (``Engine.offers``)."""
    return engine.offers(case.instance, actor_for(user, case), now)


def allowed_actions(engine: Engine, user: User, case: Case, now: datetime) -> list[str]:
    return [o.trigger.name for o in offered_actions(engine, user, case, ensure_utc(now))]


def why_not_now(engine: Engine, user: User, case: Case, trigger: str, now: datetime) -> str | None:
    """Why ``trigger`` cannot be done on ``case`` now whatever is typed (a guard's refusal), or None."""
    trig = engine.spec_of(case.instance).triggers.get(trigger)
    if trig is None:
        return None
    return engine.probe(case.instance, trig, actor_for(user, case), ensure_utc(now))[1]


# -- assignment, notes, identity ------------------------------------------------------------------


def assign_case(session: Session, engine: Engine, actor: User, case: Case, assignee: User | None,
                now: datetime, *, reason: str | None = None, expected_version: int | None = None,
                messenger: Messenger | None = None) -> HistoryEvent:
    """Assign (or unassign) a case; the new assignee is told (in-app, and by e-mail) if a messenger is given."""
    if not can_view_case(actor, case):
        raise CaseNotFound(case.reference)
    if "lead" not in actor_for(actor, case).roles:
        raise NotAllowed("only a lead of a body on this case can assign it")
    if case.stage == "closed":
        raise NotAllowed("a closed case cannot be assigned; reopen it first")
    if assignee is not None and (problem := assignee_problem(assignee, case.owning_body_code)) is not None:
        raise InvalidInput({"assignee": problem})
    errors: dict[str, str] = {}
    clean_reason = _text(errors, {"reason": reason}, "reason", required=False, max_length=2000)
    if errors:
        raise InvalidInput(errors)
    previous = case.assigned_user_id
    case.assigned_user_id = assignee.id if assignee else None
    event = engine.append_event(session, case.instance, "assigned", str(actor.id), now,
                                {"from": previous, "to": case.assigned_user_id, "reason": clean_reason},
                                expected_version=expected_version, sealed=HOST_SEALED["assigned"])
    if messenger is not None and assignee is not None and assignee.id != previous:
        messenger.case_assigned(session, case, assignee, actor, now)
    return event


def add_note(session: Session, engine: Engine, cipher: Cipher, actor: User, case: Case, text: str,
             now: datetime) -> CaseNote:
    if not can_view_case(actor, case) or not actor_for(actor, case).roles:
        raise CaseNotFound(case.reference) if not can_view_case(actor, case) else NotAllowed(
            "only leads and assigned staff can add notes")
    errors: dict[str, str] = {}
    clean = _text(errors, {"text": text}, "text")
    if errors or clean is None:
        raise InvalidInput(errors)
    note = CaseNote(case_id=case.id, author_id=actor.id, at=ensure_utc(now), text_ciphertext="")
    session.add(note)
    session.flush()
    note.text_ciphertext = Keyring(cipher).encrypt(session, case.instance_id, f"note:{note.id}", clean)
    engine.append_event(session, case.instance, "note_added", str(actor.id), now, {"note_id": note.id})
    return note


def read_note(cipher: Cipher, note: CaseNote) -> str:
    session, case = _session_of(note), None
    case = session.get(Case, note.case_id)
    assert case is not None
    return Keyring(cipher).decrypt(session, case.instance_id, f"note:{note.id}", note.text_ciphertext)


def _session_of(row: object) -> Session:
    session = object_session(row)
    if session is None:
        raise RuntimeError("reading sealed text needs a row attached to a database session")
    return session


def view_identity(session: Session, engine: Engine, cipher: Cipher, actor: User, case: Case, reason: str,
                  now: datetime, *, via: str = "web") -> Identity:
    """Decrypt the person's identity for a permitted user, recording who looked and why (and, other than on
    the web, through what: ``via``). The event opens an unlock window: see ``reprisals.sensitive``."""
    if not can_view_case(actor, case):
        raise CaseNotFound(case.reference)
    if not can_view_identity(actor, case):
        raise NotAllowed("only the owning body's lead and the assigned staff may see who the person is")
    errors: dict[str, str] = {}
    clean = _text(errors, {"reason": reason}, "reason", max_length=500)
    if errors or clean is None:
        raise InvalidInput(errors)
    identity = read_identity(session, cipher, case)
    engine.append_event(session, case.instance, "identity_viewed", str(actor.id), now,
                        {"reason": clean, **({"via": via} if via != "web" else {})},
                        sealed=HOST_SEALED["identity_viewed"])
    return identity


def read_identity(session: Session, cipher: Cipher, case: Case) -> Identity:
    """The identity, decrypted, for code that has already checked and recorded the reader (no event)."""
    d = case.detainee
    keys, iid = Keyring(cipher), case.instance_id
    return Identity(
        name=keys.decrypt(session, iid, f"detainee:{case.id}:name", d.name_ciphertext),
        number=(keys.decrypt(session, iid, f"detainee:{case.id}:number", d.number_ciphertext)
                if d.number_ciphertext else None),
        date_of_birth=(keys.decrypt(session, iid, f"detainee:{case.id}:date_of_birth", d.date_of_birth_ciphertext)
                       if d.date_of_birth_ciphertext else None),
    )


IDENTITY_FIELDS = {"detainee_name": "name", "detainee_number": "number", "detainee_date_of_birth": "date of birth"}


def correct_identity(session: Session, engine: Engine, cipher: Cipher, actor: User, case: Case,
                     data: Mapping[str, Any], now: datetime) -> list[str]:
    """A lead of the owning body corrects the person's name, number or date of birth (a typo), with a reason.
    History records which fields changed and why, never the values; the person keeps their pseudonym (and
    every case linked to it). Returns the fields changed, in words; nothing changed is refused."""
    if not can_view_case(actor, case):
        raise CaseNotFound(case.reference)
    if not is_owning_lead(actor, case):
        raise NotAllowed("only a lead of the owning body can correct who the person is")
    now = ensure_utc(now)
    errors: dict[str, str] = {}
    for name in data:
        if name not in (*IDENTITY_FIELDS, "reason"):
            errors[shown(name)] = "is not a field of the person's identity"
    today = now.astimezone(LONDON).date()
    person_name = _text(errors, data, "detainee_name", max_length=200, multiline=False)
    number = _text(errors, data, "detainee_number", required=False, max_length=40, multiline=False)
    dob = _date(errors, data, "detainee_date_of_birth", required=False, not_after=today)
    reason = _text(errors, data, "reason", max_length=500)
    if errors:
        raise InvalidInput(errors)
    assert person_name is not None and reason is not None
    old = read_identity(session, cipher, case)
    new = Identity(person_name, number, dob.isoformat() if dob else None)
    changed = [words for field, words in (("name", "name"), ("number", "number"), ("date_of_birth", "date of birth"))
               if getattr(old, field) != getattr(new, field)]
    if not changed:
        raise InvalidInput({"detainee_name": "is as recorded already: change the name, number or date of birth"})
    key = Keyring(cipher).for_instance(session, case.instance_id)
    d = case.detainee
    d.name_ciphertext = key.encrypt(f"detainee:{case.id}:name", person_name)
    d.number_ciphertext = key.encrypt(f"detainee:{case.id}:number", number) if number else None
    d.date_of_birth_ciphertext = (key.encrypt(f"detainee:{case.id}:date_of_birth", dob.isoformat())
                                  if dob else None)
    engine.append_event(session, case.instance, "identity_corrected", str(actor.id), now,
                        {"reason": reason, "changed": changed}, sealed=HOST_SEALED["identity_corrected"])
    if cipher.pseudonym_key is not None:
        link_person(session, cipher.pseudonym_key, case, person_name, dob, number, now, keep=True)
    session.flush()
    return changed


def read_description(cipher: Cipher, case: Case) -> str:
    return Keyring(cipher).decrypt(_session_of(case), case.instance_id, f"case:{case.id}:description",
                                   case.description_ciphertext)


def read_override_reason(cipher: Cipher, case: Case) -> str | None:
    """The ground and reason of the override beside consent 'none' ("ground: reason"; the stored reason is
    sealed with the case's key, the ground a protocol choice)."""
    if case.consent_override_reason is None:
        return None
    ground, _, token = case.consent_override_reason.partition(": ")
    reason = Keyring(cipher).decrypt(_session_of(case), case.instance_id, f"case:{case.id}:override", token)
    return f"{ground}: {reason}"


def event_data(cipher: Cipher, session: Session, instance_id: int, seq: int,
               data: Mapping[str, Any] | None) -> dict[str, Any]:
    """An event's data with its sealed values (an action's free text, a typed reason) decrypted: for those
    who may see it (the caller checks)."""
    return Keyring(cipher).reveal_stored(session, instance_id, seq, data)


def recipient_revealer(cipher: Cipher, session: Session, case: Case) -> Callable[[CaseContact, object], str]:
    """For ``letters_of``: reads a recipient typed by hand (for a viewer who may read the case's free text)."""
    keys = Keyring(cipher)

    def reveal(contact: CaseContact, value: object) -> str:
        return str(keys.reveal(session, case.instance_id, f"contact:{contact.history_seq}:recipient", value))

    return reveal


def rotate_keys(session: Session, cipher: Cipher,
                progress: Callable[[int, int], None] | None = None) -> int:
    """After a new key is put first in the configured keys: re-wrap every case's data key with it (what is
    sealed under a case's key does not change) and re-encrypt the report drafts in progress. Returns how many
    values changed; ``progress`` is told how many case keys have been looked at, of how many."""
    from reprisals.accounts import ReportDraft

    changed = rewrap_keys(session, cipher, progress)
    for draft in session.scalars(select(ReportDraft)):
        if cipher.needs_rotation(draft.ciphertext):
            draft.ciphertext = cipher.rotate(draft.ciphertext)
            changed += 1
    changed += rotate_secrets(session, cipher)  # two-factor secrets
    session.flush()
    return changed
