"""Pseudonyms: one stable "Person P-XXXX-XXXX-XXXX" per person within a body, without the name (decision 26).

Each detainee record carries three keyed hashes (HMAC-SHA-256 under REPRISALS_PSEUDONYM_KEY, a secret of its
own, never one of the encryption keys) of its normalised name, date of birth and number, each scoped to the
owning body, so that the database alone cannot tell that two bodies' cases concern one person. The record is
linked to a *person*: the pseudonym of the first record of that person.

The rules, in one place:

- **Same person.** A new record is the same person as an earlier record of the same body when the names
  match and the date of birth or the number match too, with neither of them contradicting (both present and
  different). It takes that person's pseudonym (the earliest one, if it matches several; they become one).
- **Possibly the same person.** A match on the name alone — nothing else present to confirm it, or a date of
  birth or number that differ — is not a link: it is offered to the owning body's leads as "possibly the
  same person", who confirm it (the two become one person) or dismiss it.
- **A new person** otherwise: the pseudonym is derived from the record's own keyed hash and its case's
  reference (so relinking from scratch gives the same pseudonyms, and two records with one name and nothing
  else never share one by chance).
- **Corrections keep the link.** Correcting a typo in the identity recomputes the hashes but keeps the
  record's person (and so every case already linked to it).
- **Who sees what.** Everyone who may see the case sees its pseudonym and the other cases of the same person
  that they may see, within the owning body; across bodies nothing is shown. Only the owning body's leads see
  possible matches, and decide them.

Normalisation: names compare without case, accents, punctuation or word order ("O'Brien, Seán" is "sean
obrien"); numbers without case, spaces or punctuation; dates of birth as ISO dates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from reprisals.access import is_owning_lead, visible_cases
from reprisals.errors import CaseNotFound, NotAllowed
from reprisals.models import Case, Detainee, PersonMatch, User
from reprisals.sealing import Keyring
from workflow.clock import ensure_utc
from workflow.engine import Engine

OPEN, CONFIRMED, DISMISSED = "open", "confirmed", "dismissed"
_NOT_LETTERS = re.compile(r"[^0-9a-z]+")
_NOT_ALNUM = re.compile(r"[^0-9A-Z]+")
_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# -- the keyed hashes ---------------------------------------------------------------------------------


def normalise_name(name: str) -> str:
    """Lower case, no accents, no punctuation, words sorted: "O'Brien, Seán" and "sean obrien" are equal."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    # An apostrophe or hyphen inside a name joins its parts ("O'Brien" is "obrien"); other marks separate words.
    joined = re.sub(r"(?<=\w)['\u2019\-](?=\w)", "", plain)
    return " ".join(sorted(w for w in _NOT_LETTERS.split(joined) if w))


def normalise_number(number: str | None) -> str | None:
    """Upper case, letters and digits only ("a 1234 bc" is "A1234BC"); None if nothing is left."""
    if number is None:
        return None
    cleaned = _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", number).upper())
    return cleaned or None


def normalise_dob(dob: date | str | None) -> str | None:
    if dob is None or dob == "":
        return None
    return dob.isoformat() if isinstance(dob, date) else date.fromisoformat(str(dob)).isoformat()


@dataclass(frozen=True)
class Marks:
    """A record's keyed hashes (hex), and the pseudonym it would have as a new person."""

    name_hash: str
    dob_hash: str | None
    number_hash: str | None
    pseudonym: str


def _mac(key: bytes, *parts: str) -> bytes:
    return hmac.new(key, "\x1f".join(parts).encode("utf-8"), hashlib.sha256).digest()


def format_pseudonym(digest: bytes) -> str:
    """``P-`` and 12 characters of Crockford base32 (60 bits) in groups of four: easy to read out and copy."""
    text = base64.b32encode(digest[:10]).translate(
        bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)).decode("ascii")[:12]
    return "P-" + "-".join(text[i:i + 4] for i in range(0, 12, 4))


def marks(key: bytes, body: str, name: str, dob: date | str | None, number: str | None, reference: str = "") -> Marks:
    """The hashes of one record. Its pseudonym as a new person also covers the case's reference: two people
    with one name and nothing else recorded are two people until a lead says otherwise."""
    n, d, u = normalise_name(name), normalise_dob(dob), normalise_number(number)
    return Marks(
        name_hash=_mac(key, "name", body, n).hex(),
        dob_hash=_mac(key, "dob", body, d).hex() if d else None,
        number_hash=_mac(key, "number", body, u).hex() if u else None,
        pseudonym=format_pseudonym(_mac(key, "person", body, n, d or "", u or "", reference)),
    )


def compare(a: Marks | Detainee, b: Marks | Detainee) -> str | None:
    """``"same"``, ``"possible"`` (the names only) or None (not the same name)."""
    if a.name_hash is None or a.name_hash != b.name_hash:
        return None
    conflict = bool((a.dob_hash and b.dob_hash and a.dob_hash != b.dob_hash)
                    or (a.number_hash and b.number_hash and a.number_hash != b.number_hash))
    confirmed = bool((a.dob_hash and a.dob_hash == b.dob_hash) or (a.number_hash and a.number_hash == b.number_hash))
    return "same" if confirmed and not conflict else "possible"


# -- linking ------------------------------------------------------------------------------------------


def link_person(session: Session, key: bytes, case: Case, name: str, dob: date | str | None, number: str | None,
                now: datetime, *, keep: bool = False) -> str:
    """Hash ``case``'s person and link them (the rules above); returns their pseudonym. With ``keep`` (an
    identity corrected) the record keeps its person. Possible matches are recorded for the owning leads."""
    detainee = case.detainee
    m = marks(key, case.owning_body_code, name, dob, number, case.reference)
    detainee.name_hash, detainee.dob_hash, detainee.number_hash = m.name_hash, m.dob_hash, m.number_hash
    candidates = list(session.execute(
        select(Detainee, Case.received_at).join(Case, Case.id == Detainee.case_id)
        .where(Detainee.name_hash == m.name_hash, Case.owning_body_code == case.owning_body_code,
               Detainee.case_id != case.id, Detainee.person.is_not(None))
        .order_by(Case.received_at, Case.id)))
    same = [d for d, _ in candidates if compare(m, d) == "same"]
    persons = list(dict.fromkeys(d.person for d in same if d.person))
    if keep and detainee.person:
        person = detainee.person
    elif persons:
        person = persons[0]  # the earliest record's person
    else:
        person = m.pseudonym
    detainee.person = person
    merge_persons(session, case.owning_body_code, person, [p for p in persons if p != person])
    session.flush()
    for other, _ in candidates:
        if other.person != person and compare(m, other) == "possible":
            _offer(session, case.id, other.case_id, now)
    return person


def merge_persons(session: Session, body: str, into: str, others: list[str]) -> None:
    """Every record of ``body`` linked to one of ``others`` becomes ``into``'s."""
    if not others:
        return
    owned = select(Case.id).where(Case.owning_body_code == body)
    session.execute(update(Detainee).where(Detainee.person.in_(others), Detainee.case_id.in_(owned))
                    .values(person=into).execution_options(synchronize_session="fetch"))


def _offer(session: Session, case_id: int, other_id: int, now: datetime) -> None:
    pair = or_(and_(PersonMatch.case_id == case_id, PersonMatch.other_case_id == other_id),
               and_(PersonMatch.case_id == other_id, PersonMatch.other_case_id == case_id))
    if session.scalar(select(PersonMatch.id).where(pair)) is None:
        session.add(PersonMatch(case_id=case_id, other_case_id=other_id, status=OPEN, found_at=ensure_utc(now)))
        session.flush()


def link_unlinked(session: Session, keys: Keyring, now: datetime,
                  progress: Callable[[int, int], None] | None = None) -> int:
    """Hash and link every record not linked yet (after the upgrade that brought pseudonyms, or cases opened
    without the key), oldest case first so that the earliest record names the person. Returns how many."""
    key = keys.master.pseudonym_key
    if key is None:
        raise RuntimeError("REPRISALS_PSEUDONYM_KEY is not configured")
    cases = list(session.scalars(select(Case).join(Detainee, Detainee.case_id == Case.id)
                                 .where(Detainee.name_hash.is_(None)).order_by(Case.received_at, Case.id)))
    for i, case in enumerate(cases, 1):
        d, iid = case.detainee, case.instance_id
        name = keys.decrypt(session, iid, f"detainee:{case.id}:name", d.name_ciphertext)
        number = keys.decrypt(session, iid, f"detainee:{case.id}:number", d.number_ciphertext) \
            if d.number_ciphertext else None
        dob = keys.decrypt(session, iid, f"detainee:{case.id}:date_of_birth", d.date_of_birth_ciphertext) \
            if d.date_of_birth_ciphertext else None
        link_person(session, key, case, name, dob, number, now)
        if progress is not None:
            progress(i, len(cases))
    return len(cases)


# -- what a viewer sees -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OtherCase:
    reference: str
    received_at: datetime
    stage: str | None


@dataclass(frozen=True)
class PossibleMatch:
    id: int
    reference: str  # the other case
    received_at: datetime


@dataclass(frozen=True)
class PersonView:
    person: str | None  # None: not linked yet (``reprisals people link``)
    others: list[OtherCase]  # the same person's other cases of the owning body that the viewer may see
    possible: list[PossibleMatch]  # for the owning body's leads only

    @property
    def label(self) -> str:
        return f"Person {self.person}" if self.person else "Not linked yet"


def person_view(session: Session, viewer: User, case: Case) -> PersonView:
    person = case.detainee.person
    others: list[OtherCase] = []
    if person is not None:
        seen = visible_cases(viewer).with_only_columns(Case.id).scalar_subquery()
        rows = session.execute(
            select(Case.reference, Case.received_at, Case.current_stage).join(Detainee, Detainee.case_id == Case.id)
            .where(Detainee.person == person, Case.owning_body_code == case.owning_body_code, Case.id != case.id,
                   Case.id.in_(seen))
            .order_by(Case.received_at.desc(), Case.id.desc()))
        others = [OtherCase(r.reference, r.received_at, r.current_stage) for r in rows]
    possible: list[PossibleMatch] = []
    if is_owning_lead(viewer, case):
        for match in open_matches(session, case):
            other_id = match.other_case_id if match.case_id == case.id else match.case_id
            other = session.get(Case, other_id)
            if other is not None and other.detainee.person != person:
                possible.append(PossibleMatch(match.id, other.reference, other.received_at))
    return PersonView(person, others, possible)


def open_matches(session: Session, case: Case) -> list[PersonMatch]:
    return list(session.scalars(select(PersonMatch).where(
        PersonMatch.status == OPEN, or_(PersonMatch.case_id == case.id, PersonMatch.other_case_id == case.id))
        .order_by(PersonMatch.id)))


def decide_match(session: Session, engine: Engine, lead: User, case: Case, match_id: int, confirm: bool,
                 now: datetime) -> Case:
    """A lead of the owning body confirms (the two records become one person: the other case's) or dismisses a
    possible match shown on ``case``. Both cases' histories say it. Returns the other case."""
    if not is_owning_lead(lead, case):
        raise NotAllowed("only a lead of the owning body can decide whether two cases are the same person")
    match = session.get(PersonMatch, match_id)
    if match is None or case.id not in (match.case_id, match.other_case_id):
        raise CaseNotFound(case.reference)
    if match.status != OPEN:
        raise NotAllowed("this possible match was already " + match.status)
    other = session.get(Case, match.other_case_id if match.case_id == case.id else match.case_id)
    assert other is not None
    match.status = CONFIRMED if confirm else DISMISSED
    match.decided_by_user_id, match.decided_at = lead.id, ensure_utc(now)
    if confirm and other.detainee.person and case.detainee.person != other.detainee.person:
        old = case.detainee.person
        merge_persons(session, case.owning_body_code, other.detainee.person, [old] if old else [])
        case.detainee.person = other.detainee.person
    kind = "person_match_confirmed" if confirm else "person_match_dismissed"
    for this, that in ((case, other), (other, case)):
        engine.append_event(session, this.instance, kind, str(lead.id), now, {"other_case": that.reference})
    session.flush()
    return other
