"""Pseudonyms (issue 13, decision 26): one stable pseudonym per person within a body, from a keyed hash of the
normalised name, date of birth and number where present; a match on the name alone is only offered to the
owning leads; corrections keep the link; across bodies nothing is shown."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from reprisals.errors import InvalidInput, NotAllowed
from reprisals.models import Case, Detainee, PersonMatch
from reprisals.pseudonyms import (
    compare,
    decide_match,
    format_pseudonym,
    link_unlinked,
    marks,
    normalise_name,
    normalise_number,
    person_view,
)
from reprisals.sealing import Keyring
from reprisals.services import correct_identity, open_case, read_identity
from tests.conftest import Database
from tests.factories import TEST_PSEUDONYM_KEY, case_data, cipher, make_user
from tests.reprisals.conftest import Cast
from workflow.engine import Engine
from workflow.models import HistoryEvent

T0 = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)
KEY = TEST_PSEUDONYM_KEY.encode()
PSEUDONYM = re.compile(r"^P-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")


def _open(s: Session, wf: Engine, cast: Cast, *, name: str = "Ada Quill", dob: str | None = None,
          number: str | None = None, actor: Any = None, days: int = 0) -> Case:
    data = case_data(cast.establishment, detainee_name=name, detainee_date_of_birth=dob or "",
                     detainee_number=number or "", received_at=(T0 + timedelta(days=days)).isoformat())
    return open_case(s, wf, cipher(), actor or cast.staff, T0 + timedelta(days=days), data)


# -- the rules, on the hashes ------------------------------------------------------------------------


def test_names_compare_without_case_accents_punctuation_or_word_order() -> None:
    assert normalise_name("O'Brien, Seán") == normalise_name("sean  OBRIEN") == "obrien sean"
    assert normalise_name("Smith John") == normalise_name("John Smith")
    assert normalise_name("Anne-Marie Lee") == normalise_name("annemarie lee")
    assert normalise_name("Ann Lee") != normalise_name("Anne Lee")
    assert normalise_number(" a 1234-bc ") == "A1234BC"
    assert normalise_number(" - ") is None and normalise_number(None) is None


@pytest.mark.parametrize(("a", "b", "expected"), [
    # (name, dob, number) of two records of one body
    (("Ada Quill", "1990-01-02", "A1234BC"), ("ada quill", "1990-01-02", "a1234bc"), "same"),
    (("Ada Quill", "1990-01-02", None), ("Ada Quill", "1990-01-02", "A1234BC"), "same"),  # number missing on one
    (("Ada Quill", None, "A1234BC"), ("Ada Quill", "1990-01-02", "A1234BC"), "same"),  # date missing on one
    (("Ada Quill", None, None), ("Ada Quill", None, None), "possible"),  # the name alone is not a link
    (("Ada Quill", "1990-01-02", None), ("Ada Quill", None, "A1234BC"), "possible"),  # nothing confirms it
    (("Ada Quill", "1990-01-02", "A1234BC"), ("Ada Quill", "1990-01-02", "B9999ZZ"), "possible"),  # numbers differ
    (("Ada Quill", "1990-01-02", "A1234BC"), ("Ada Quill", "1991-01-02", "A1234BC"), "possible"),  # dates differ
    (("Ada Quill", "1990-01-02", "A1234BC"), ("Ada Quell", "1990-01-02", "A1234BC"), None),  # another name
])
def test_same_possible_or_not_from_names_dates_and_numbers_present_or_missing(
        a: tuple[str, str | None, str | None], b: tuple[str, str | None, str | None], expected: str | None) -> None:
    assert compare(marks(KEY, "IMB", *a), marks(KEY, "IMB", *b)) == expected
    assert compare(marks(KEY, "IMB", *b), marks(KEY, "IMB", *a)) == expected


def test_hashes_are_keyed_and_scoped_to_the_body() -> None:
    one = marks(KEY, "IMB", "Ada Quill", "1990-01-02", "A1234BC")
    assert one == marks(KEY, "IMB", "ada  quill", "1990-01-02", "a1234bc")  # stable
    assert PSEUDONYM.match(one.pseudonym)
    other_body = marks(KEY, "PPO", "Ada Quill", "1990-01-02", "A1234BC")
    other_key = marks(b"another key of at least thirty-two bytes", "IMB", "Ada Quill", "1990-01-02", "A1234BC")
    for m in (other_body, other_key):
        assert {m.name_hash, m.dob_hash, m.number_hash, m.pseudonym}.isdisjoint(
            {one.name_hash, one.dob_hash, one.number_hash, one.pseudonym})
    assert compare(one, other_body) is None
    assert marks(KEY, "IMB", "Ada Quill", None, None).dob_hash is None
    assert format_pseudonym(bytes(10)) == "P-0000-0000-0000"


# -- linking as cases are opened ---------------------------------------------------------------------


def test_the_same_person_gets_the_same_pseudonym_and_a_name_alone_is_offered_not_linked(
        database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        first = _open(s, wf, cast, dob="1990-01-02", number="A1234BC")
        again = _open(s, wf, cast, name="QUILL, Ada", number="a1234bc", days=3)  # same name and number
        name_only = _open(s, wf, cast, name="Ada Quill", days=5)  # nothing to confirm it
        stranger = _open(s, wf, cast, name="Bo Stranger", dob="1990-01-02", number="A1234BC", days=6)
        s.commit()
        assert PSEUDONYM.match(first.detainee.person or "")
        assert again.detainee.person == first.detainee.person
        assert name_only.detainee.person not in (None, first.detainee.person)
        assert stranger.detainee.person not in (first.detainee.person, name_only.detainee.person)
        matches = s.scalars(select(PersonMatch)).all()
        assert {(m.case_id, m.other_case_id, m.status) for m in matches} == {
            (name_only.id, first.id, "open"), (name_only.id, again.id, "open")}
        # Nothing identifying in the columns: hashes and the pseudonym only.
        row = s.execute(select(Detainee.name_hash, Detainee.dob_hash, Detainee.number_hash)
                        .where(Detainee.case_id == first.id)).one()
        assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in row)
        assert s.scalar(select(Detainee.dob_hash).where(Detainee.case_id == name_only.id)) is None


def test_a_record_matching_two_people_joins_them_under_the_earliest(database: Database, wf: Engine,
                                                                    cast: Cast) -> None:
    with database.session() as s:
        by_dob = _open(s, wf, cast, dob="1990-01-02")
        by_number = _open(s, wf, cast, number="A1234BC", days=1)  # the name alone: offered only
        assert by_number.detainee.person != by_dob.detainee.person
        both = _open(s, wf, cast, dob="1990-01-02", number="A1234BC", days=2)
        s.commit()
        people = {c.reference: s.scalar(select(Detainee.person).where(Detainee.case_id == c.id))
                  for c in (by_dob, by_number, both)}
        assert len(set(people.values())) == 1
        view = person_view(s, cast.lead, both)
        assert view.possible == []  # the open offer between the first two no longer shows: they are one person


def test_other_bodies_never_share_a_person_or_an_offer(database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        ppo_staff = make_user(s, body="PPO")
        imb = _open(s, wf, cast, dob="1990-01-02", number="A1234BC")
        ppo = _open(s, wf, cast, dob="1990-01-02", number="A1234BC", actor=ppo_staff, days=1)
        s.commit()
        assert imb.detainee.person != ppo.detainee.person
        assert imb.detainee.name_hash != ppo.detainee.name_hash
        assert s.scalars(select(PersonMatch)).all() == []


def test_without_the_key_nothing_is_linked_and_link_unlinked_gives_the_same_pseudonyms(
        database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        refs = [_open(s, wf, cast, dob="1990-01-02").reference, _open(s, wf, cast, dob="1990-01-02", days=1).reference]
        s.commit()
        before = {r: p for r, p in s.execute(select(Case.reference, Detainee.person).join(Detainee))}
        s.execute(update(Detainee).values(name_hash=None, dob_hash=None, number_hash=None, person=None))
        s.commit()
    with database.session() as s:
        seen: list[tuple[int, int]] = []
        assert link_unlinked(s, Keyring(cipher()), T0, lambda i, n: seen.append((i, n))) == 2
        assert seen == [(1, 2), (2, 2)]
        s.commit()
        after = {r: p for r, p in s.execute(select(Case.reference, Detainee.person).join(Detainee))}
        assert after == before and after[refs[0]] == after[refs[1]]
        assert link_unlinked(s, Keyring(cipher()), T0) == 0
        plain = cipher()
        plain.pseudonym_key = None
        case = open_case(s, wf, plain, cast.staff, T0, case_data(cast.establishment, detainee_name="No Key"))
        assert case.detainee.person is None and case.detainee.name_hash is None


# -- who sees what -----------------------------------------------------------------------------------


def test_each_viewer_sees_the_other_cases_they_may_see_within_the_owning_body(database: Database, wf: Engine,
                                                                             cast: Cast) -> None:
    with database.session() as s:
        first = _open(s, wf, cast, dob="1990-01-02")
        private = open_case(s, wf, cipher(), cast.staff, T0 + timedelta(days=1), case_data(
            cast.establishment, detainee_name="Ada Quill", detainee_date_of_birth="1990-01-02", detainee_number="",
            party_bodies=[], received_at=(T0 + timedelta(days=1)).isoformat()))  # HMIP is not party to this one
        third = _open(s, wf, cast, dob="1990-01-02", actor=cast.other_staff, days=2)
        s.commit()
        refs = lambda viewer: [o.reference for o in person_view(s, viewer, third).others]  # noqa: E731
        assert refs(cast.lead) == [private.reference, first.reference]  # newest first
        assert refs(cast.auditor) == [private.reference, first.reference]
        assert refs(cast.party_lead) == [first.reference]  # a party body: only the cases it is party to
        assert refs(cast.staff) == [private.reference, first.reference]  # assigned to both
        assert refs(cast.other_staff) == []  # assigned to this one only
        assert refs(cast.outside_lead) == [] and refs(cast.admin) == []
        assert person_view(s, cast.auditor, third).person == first.detainee.person


def test_possible_matches_are_for_the_owning_leads_to_confirm_or_dismiss(database: Database, wf: Engine,
                                                                        cast: Cast) -> None:
    with database.session() as s:
        a = _open(s, wf, cast, dob="1990-01-02")
        b = _open(s, wf, cast, number="A1234BC", days=1)
        c = _open(s, wf, cast, number="Z0000ZZ", days=2)  # possible with both: b's number differs
        s.commit()
        assert [p.reference for p in person_view(s, cast.lead, b).possible] == [a.reference, c.reference]
        for viewer in (cast.auditor, cast.party_lead, cast.staff):
            assert person_view(s, viewer, b).possible == []
        match = person_view(s, cast.lead, b).possible[0]  # with a
        for who in (cast.auditor, cast.party_lead, cast.staff, cast.outside_lead):
            with pytest.raises(NotAllowed):
                decide_match(s, wf, who, b, match.id, True, T0)
        s.rollback()
        other = decide_match(s, wf, cast.lead, b, match.id, True, T0 + timedelta(days=3))
        s.commit()
        assert other.id == a.id and b.detainee.person == a.detainee.person
        with pytest.raises(NotAllowed, match="already confirmed"):
            decide_match(s, wf, cast.second_lead, b, match.id, False, T0)
        s.rollback()
        # Dismissed: they stay apart, and the offer is gone from both pages.
        left = person_view(s, cast.lead, c).possible
        assert {p.reference for p in left} == {a.reference, b.reference}
        for p in left:
            decide_match(s, wf, cast.second_lead, c, p.id, False, T0 + timedelta(days=3))
        s.commit()
        assert c.detainee.person != a.detainee.person
        assert person_view(s, cast.lead, c).possible == person_view(s, cast.lead, a).possible == []
        kinds = s.execute(select(HistoryEvent.instance_id, HistoryEvent.kind, HistoryEvent.data).where(
            HistoryEvent.kind.like("person_match_%"))).all()
        assert ((b.instance_id, "person_match_confirmed", {"other_case": a.reference}) in
                [(i, k, d) for i, k, d in kinds])
        assert sum(k == "person_match_dismissed" for _, k, _ in kinds) == 4  # both histories, twice


# -- corrections ---------------------------------------------------------------------------------------


def test_correcting_a_typo_keeps_the_pseudonym_and_history_has_no_identity(database: Database, wf: Engine,
                                                                          cast: Cast) -> None:
    with database.session() as s:
        first = _open(s, wf, cast, name="Jon Smiht", dob="1990-01-02", number="A1234BC")
        second = _open(s, wf, cast, name="Jon Smiht", dob="1990-01-02", days=1)
        s.commit()
        person = first.detainee.person
        changed = correct_identity(s, wf, cipher(), cast.lead, first, {
            "detainee_name": "John Smith", "detainee_number": "A1234BC", "detainee_date_of_birth": "1990-01-02",
            "reason": "misspelt when recorded"}, T0 + timedelta(days=2))
        s.commit()
        assert changed == ["name"]
        assert read_identity(s, cipher(), first).name == "John Smith"
        assert first.detainee.person == person == second.detainee.person
        assert person_view(s, cast.lead, first).others[0].reference == second.reference
        event = s.scalars(select(HistoryEvent).where(HistoryEvent.kind == "identity_corrected")).one()
        assert event.data["changed"] == ["name"] and set(event.data["reason"]) == {"$sealed"}
        assert "Smith" not in str(event.data) and "Smiht" not in str(event.data)
        # A new record with the corrected name joins the same person.
        third = _open(s, wf, cast, name="John Smith", dob="1990-01-02", days=3)
        assert third.detainee.person == person


@pytest.mark.parametrize(("data", "field", "problem"), [
    ({"detainee_name": "", "reason": "typo"}, "detainee_name", "is required"),
    ({"detainee_name": "Ada Quill", "detainee_date_of_birth": "2999-01-01", "reason": "typo"},
     "detainee_date_of_birth", "in the past"),
    ({"detainee_name": "Ada Quill", "reason": " "}, "reason", "is required"),
    ({"detainee_name": "Ada Quill", "detainee_date_of_birth": "1990-01-02", "reason": "no change"},
     "detainee_name", "as recorded already"),
    ({"detainee_name": "Ada Quill", "surname": "x", "reason": "typo"}, "surname", "not a field"),
])
def test_a_bad_correction_is_refused_naming_the_field_and_changes_nothing(
        database: Database, wf: Engine, cast: Cast, data: dict[str, str], field: str, problem: str) -> None:
    with database.session() as s:
        case = _open(s, wf, cast, dob="1990-01-02")
        s.commit()
        before = (case.detainee.name_ciphertext, case.instance.head_seq, case.detainee.person)
        with pytest.raises(InvalidInput) as exc:
            correct_identity(s, wf, cipher(), cast.lead, case, data, T0 + timedelta(days=1))
        assert problem in exc.value.errors[field]
        s.rollback()
        assert (case.detainee.name_ciphertext, case.instance.head_seq, case.detainee.person) == before


def test_only_the_owning_leads_correct_who_the_person_is(database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        case = _open(s, wf, cast)
        s.commit()
        for who in (cast.staff, cast.auditor, cast.party_lead):
            with pytest.raises(NotAllowed):
                correct_identity(s, wf, cipher(), who, case, {"detainee_name": "X", "reason": "y"}, T0)
