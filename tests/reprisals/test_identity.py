"""Do no harm, rule 1 and 2: identity is ciphertext at rest, bound to its row, rotated with the keys,
shown only to the permitted few with every view logged, and never in history, errors or reprs."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from reprisals.crypto import Cipher, generate_key
from reprisals.errors import CaseNotFound, IdentityUnreadable, InvalidInput, NotAllowed, ReprisalsError
from reprisals.models import CaseNote, Detainee
from reprisals.protocol import build_engine
from reprisals.sealing import CaseKey, is_sealed
from reprisals.services import (
    add_note,
    advance_case,
    event_data,
    get_case,
    open_case,
    read_description,
    read_note,
    rotate_keys,
    view_identity,
)
from tests.conftest import DATABASES, Database, checkpoint_sqlite
from tests.factories import (
    CANARY_DESCRIPTION,
    CANARY_DOB,
    CANARY_NAME,
    CANARY_NUMBER,
    CONSENT,
    REFER,
    TEST_KEY,
    case_data,
    cipher,
    walk_to,
)
from tests.reprisals.conftest import Cast
from workflow.engine import Engine
from workflow.errors import WorkflowError
from workflow.models import HistoryEvent

T0 = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)
CANARIES = (CANARY_NAME, CANARY_NUMBER, CANARY_DOB, CANARY_DESCRIPTION, "Canarywhistle", "CANARYTEXT42")
NOTE = f"Spoke to {CANARY_NAME} ({CANARY_NUMBER}) on the wing"


def leaks(text: str | bytes) -> list[str]:
    """The canaries found in ``text`` (case-insensitive)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    low = text.lower()
    return [c for c in CANARIES if c.lower() in low]


def _populate(database: Database, wf: Engine, cast: Cast, c: Cipher | None = None, n: int = 2) -> list[str]:
    """Open ``n`` cases with the canary identity, move them on, add a note and view the identity;
    commit. Returns the references."""
    c = c or cipher()
    refs = []
    with database.session() as s:
        for i in range(n):
            case = open_case(s, wf, c, cast.staff, T0, case_data(cast.establishment))
            walk_to(s, wf, case, "referred", lead=cast.lead, second_lead=cast.second_lead, now=T0)
            add_note(s, wf, c, cast.staff, case, NOTE, T0 + timedelta(minutes=i))
            assert view_identity(s, wf, c, cast.lead, case, "to write the referral letter", T0).name == CANARY_NAME
            refs.append(case.reference)
        s.commit()
    return refs


def _history_text(s: Session) -> str:
    return "\n".join(
        json.dumps([e.kind, e.trigger, e.from_stage, e.to_stage, e.actor_id, e.data, e.prev_hash, e.hash])
        for e in s.scalars(select(HistoryEvent))
    )


# -- at rest ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("database", [d for d in DATABASES if d == "sqlite"], indirect=True)
def test_no_canary_in_sqlite_file_or_wal_when_cases_with_identity_are_committed(
        database: Database, wf: Engine, cast: Cast) -> None:
    path = Path(database.url.removeprefix("sqlite:///"))
    wal = Path(f"{path}-wal")
    # An idle connection kept open stops the last writer's close from checkpointing the WAL away,
    # so the WAL is read as the writes left it, then again after a checkpoint.
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the WAL index
    try:
        _populate(database, wf, cast)
        assert wal.exists() and wal.stat().st_size > 0
        assert b"RPR-2025-0001" in wal.read_bytes()
        assert leaks(wal.read_bytes()) == []
    finally:
        holder.close()
    database.engine.dispose()
    checkpoint_sqlite(path)
    data = path.read_bytes()
    assert b"RPR-2025-0001" in data  # the file really holds the cases
    assert leaks(data) == []
    assert leaks(wal.read_bytes() if wal.exists() else b"") == []


@pytest.mark.parametrize("database", [d for d in DATABASES if d == "postgresql"], indirect=True)
def test_no_canary_in_any_postgresql_row_when_cases_with_identity_are_committed(
        database: Database, wf: Engine, cast: Cast) -> None:
    _populate(database, wf, cast)
    tables = [r[0] for r in database.raw(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_type = 'BASE TABLE'")]
    assert {"cases", "detainees", "case_notes", "wf_history"} <= set(tables)
    text_columns = database.raw(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')")
    assert ("detainees", "name_ciphertext") in {(t, c) for t, c in text_columns}
    seen = 0
    for table, column in text_columns:
        for (value,) in database.raw(f'SELECT CAST("{column}" AS text) FROM "{table}"'):
            seen += 1
            assert leaks(value or "") == [], f"{table}.{column}"
    # And whole rows, whatever their column types.
    for table in tables:
        for (row,) in database.raw(f'SELECT CAST(t AS text) FROM "{table}" t'):
            assert leaks(row) == [], table
    assert seen > 50


def test_no_canary_in_history_when_identity_is_opened_viewed_noted_and_referred(
        database: Database, wf: Engine, cast: Cast) -> None:
    _populate(database, wf, cast)
    with database.session() as s:
        text = _history_text(s)
        assert "identity_viewed" in text and "note_added" in text and "refer" in text
        assert leaks(text) == []


# -- bound to the row ---------------------------------------------------------------------------------


def test_identity_unreadable_without_identity_in_message_when_ciphertext_is_moved_between_cases(
        database: Database, wf: Engine, cast: Cast) -> None:
    a, b = _populate(database, wf, cast)
    database.raw(
        "UPDATE detainees SET name_ciphertext = (SELECT d.name_ciphertext FROM detainees d "
        "JOIN cases c ON c.id = d.case_id WHERE c.reference = :a) "
        "WHERE case_id = (SELECT id FROM cases WHERE reference = :b)", a=a, b=b)
    database.raw(
        "UPDATE cases SET description_ciphertext = (SELECT c2.description_ciphertext FROM cases c2 "
        "WHERE c2.reference = :a) WHERE reference = :b", a=a, b=b)
    with database.session() as s:
        case_b = get_case(s, cast.lead, b)
        events = len(wf.history(s, case_b.instance))
        with pytest.raises(IdentityUnreadable) as err:
            view_identity(s, wf, cipher(), cast.lead, case_b, "checking", T0)
        assert "another record" in str(err.value)
        assert leaks(str(err.value)) == [] and leaks(repr(err.value)) == []
        assert err.value.__cause__ is None
        assert len(wf.history(s, case_b.instance)) == events  # a failed view is not a view
        with pytest.raises(IdentityUnreadable) as err2:
            read_description(cipher(), case_b)
        assert leaks(str(err2.value)) == []
        # Case A is untouched and still reads.
        assert view_identity(s, wf, cipher(), cast.lead, get_case(s, cast.lead, a), "checking", T0).name \
            == CANARY_NAME


def test_identity_unreadable_when_ciphertext_moves_between_fields_of_one_person(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = open_case(session, wf, cipher(), cast.staff, T0, case_data(cast.establishment))
    case.detainee.number_ciphertext = case.detainee.name_ciphertext
    with pytest.raises(IdentityUnreadable) as err:
        view_identity(session, wf, cipher(), cast.lead, case, "checking", T0)
    assert leaks(str(err.value)) == []


@pytest.mark.parametrize("plaintext", [CANARY_NAME, json.dumps(CANARY_NAME), json.dumps([CANARY_NAME])],
                         ids=["raw", "json_string", "json_list"])
def test_identity_unreadable_without_identity_anywhere_when_a_valid_token_is_not_sealed(plaintext: str) -> None:
    """A token made with our key but not by Cipher (an import, an older format) is refused as
    unreadable, and the plaintext is kept out of the error and its chain."""
    token = Fernet(TEST_KEY.encode()).encrypt(plaintext.encode()).decode()
    with pytest.raises(IdentityUnreadable) as err:
        cipher().decrypt("detainee:1:name", token)
    chain = []
    e: BaseException | None = err.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    assert leaks(" ".join(f"{x!s} {x!r} {vars(x)}" for x in chain)) == []


# -- keys -----------------------------------------------------------------------------------------


def test_only_the_new_key_reads_everything_when_keys_are_rotated(
        database: Database, wf: Engine, cast: Cast) -> None:
    old, new = TEST_KEY, generate_key()
    refs = _populate(database, wf, cast, Cipher([old]))
    with database.session() as s:
        before = {d.id: (d.name_ciphertext, d.number_ciphertext, d.date_of_birth_ciphertext)
                  for d in s.scalars(select(Detainee))}
        notes = len(s.scalars(select(CaseNote)).all())
        wrapped = {k.instance_id: k.wrapped for k in s.scalars(select(CaseKey))}
        assert len(wrapped) == len(refs) and notes
        changed = rotate_keys(s, Cipher([new, old]))
        assert changed == len(refs)  # each case's key is re-wrapped; what it sealed does not change
        s.commit()
    with database.session() as s:
        after = {d.id: (d.name_ciphertext, d.number_ciphertext, d.date_of_birth_ciphertext)
                 for d in s.scalars(select(Detainee))}
        assert after == before
        assert all(wrapped[k.instance_id] != k.wrapped for k in s.scalars(select(CaseKey)))
        assert rotate_keys(s, Cipher([new, old])) == 0  # nothing left to rotate
    with database.session() as s:
        new_only, old_only = Cipher([new]), Cipher([old])
        wf = build_engine(cipher=new_only)  # the engine seals the view's reason with the keys configured now
        for ref in refs:
            case = get_case(s, cast.lead, ref)
            identity = view_identity(s, wf, new_only, cast.lead, case, "after rotation", T0)
            assert (identity.name, identity.number, identity.date_of_birth) == (CANARY_NAME, CANARY_NUMBER,
                                                                                CANARY_DOB)
            assert read_description(new_only, case) == CANARY_DESCRIPTION
            with pytest.raises(IdentityUnreadable) as err:
                view_identity(s, wf, old_only, cast.lead, case, "with the old key", T0)
            assert leaks(str(err.value)) == []
            with pytest.raises(IdentityUnreadable):
                read_description(old_only, case)
        for note in s.scalars(select(CaseNote)):
            assert read_note(new_only, note) == NOTE
            with pytest.raises(IdentityUnreadable):
                read_note(old_only, note)


# -- who sees it, and the log of who saw it -----------------------------------------------------------


def test_identity_viewed_event_records_who_and_why_when_permitted_users_view(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment))
    s.commit()
    seen = []
    for who, reason in ((cast.lead, "to write the referral letter"), (cast.staff, "  before the visit  ")):
        identity = view_identity(s, wf, cipher(), who, case, reason, T0 + timedelta(hours=1))
        assert identity.name == CANARY_NAME and identity.number == CANARY_NUMBER
        seen.append((str(who.id), reason.strip()))
    s.commit()
    with database.session() as s2:
        events = [e for e in wf.history(s2, get_case(s2, cast.lead, case.reference).instance)
                  if e.kind == "identity_viewed"]
        assert [(e.actor_id, event_data(cipher(), s2, e.instance_id, e.seq, e.data)["reason"])
                for e in events] == seen
        assert all(is_sealed(e.data["reason"]) for e in events)  # sealed with the case's key in history
        assert all(e.at == T0 + timedelta(hours=1) for e in events)
        assert case.stage == "reported"  # a view is logged, not a move


def test_view_refused_and_nothing_logged_when_auditor_party_lead_or_outsider_asks(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment))
    s.commit()
    events = len(wf.history(s, case.instance))
    refusals: list[tuple[object, type[ReprisalsError]]] = [
        (cast.auditor, NotAllowed), (cast.party_lead, NotAllowed), (cast.outside_lead, CaseNotFound),
        (cast.other_staff, CaseNotFound), (cast.admin, CaseNotFound)]
    for who, error in refusals:
        with pytest.raises(error) as err:
            view_identity(s, wf, cipher(), who, case, "curious", T0)  # type: ignore[arg-type]
        assert leaks(str(err.value)) == []
    with pytest.raises(InvalidInput):
        view_identity(s, wf, cipher(), cast.lead, case, "   ", T0)  # a reason is required
    assert len(wf.history(s, case.instance)) == events
    s.rollback()


# -- never in text meant for people or logs ---------------------------------------------------------


def test_no_canary_in_reprs_or_error_messages_when_cases_hold_identity(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment))
    walk_to(s, wf, case, "triage", lead=cast.lead, second_lead=cast.second_lead, now=T0)
    s.commit()
    texts = [repr(case), str(case), repr(case.instance), repr(case.detainee), repr(case.parties)]
    texts += [repr(e) for e in wf.history(s, case.instance)]
    errors: list[Exception] = []

    def attempt(fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        try:
            fn(*args, **kwargs)
        except (ReprisalsError, WorkflowError) as exc:
            errors.append(exc)
        else:
            raise AssertionError(f"{fn.__name__} should have been refused")
        finally:
            s.rollback()

    future = (T0 + timedelta(days=3650)).date().isoformat()
    attempt(open_case, s, wf, cipher(), cast.staff, T0, case_data(
        cast.establishment, detainee_name=CANARY_NAME * 10, detainee_number=CANARY_NUMBER * 10,
        description=CANARY_DESCRIPTION * 300, channel="pigeon"))
    attempt(open_case, s, wf, cipher(), cast.staff, T0, case_data(
        cast.establishment, detainee_date_of_birth=future, received_at=CANARY_NAME,
        original_contact_date=CANARY_DOB + "x", establishment_id=CANARY_NUMBER))
    attempt(open_case, s, wf, cipher(), cast.staff, T0, case_data(
        cast.establishment, detainee_date_of_birth=CANARY_NAME, risk=CANARY_NUMBER, age_group=CANARY_DOB))
    attempt(open_case, s, wf, cipher(), cast.auditor, T0, case_data(cast.establishment))
    attempt(get_case, s, cast.other_staff, case.reference)
    attempt(view_identity, s, wf, cipher(), cast.auditor, case, CANARY_NAME, T0)
    attempt(view_identity, s, wf, Cipher([generate_key()]), cast.lead, case, "wrong key", T0)
    attempt(add_note, s, wf, cipher(), cast.auditor, case, NOTE, T0)
    attempt(add_note, s, wf, cipher(), cast.lead, case, NOTE * 1000, T0)
    attempt(advance_case, s, wf, cast.lead, case, "refer", {**REFER, "override_reason": CANARY_NAME}, T0)
    attempt(advance_case, s, wf, cast.lead, case, "decline", {"reason": CANARY_NAME * 200}, T0)
    attempt(advance_case, s, wf, cast.lead, case, "record_consent_and_risk", CONSENT, T0)
    attempt(advance_case, s, wf, cast.lead, case, "unmask", {"name": CANARY_NAME}, T0)
    attempt(advance_case, s, wf, cast.auditor, case, "withdraw", {"reason": CANARY_NAME}, T0)
    assert len(errors) == 14
    for exc in errors:
        texts += [str(exc), repr(exc), json.dumps(getattr(exc, "errors", {}))]
    assert {t: leaks(t) for t in texts if leaks(t)} == {}
