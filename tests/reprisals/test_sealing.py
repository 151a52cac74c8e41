"""Sealing with each case's key: the engine hands the keyring every sensitive value before hashing (a
field the protocol marks ``sensitive: false`` stays as typed), a sealed value cannot be moved within a
case, and a destroyed key leaves the text unreadable by anyone and the history verifiable."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from sqlalchemy import select

from reprisals.errors import IdentityUnreadable
from reprisals.protocol import build_engine
from reprisals.sealing import ERASED, SEALED, CaseKey, KeyDestroyed, Keyring, destroy_key, is_sealed
from reprisals.services import advance_case, event_data, open_case, read_description, view_identity
from tests.conftest import Database
from tests.factories import CANARY_DESCRIPTION, case_data, cipher
from tests.reprisals.conftest import Cast
from tests.workflow.errand import CLERK, NOW, errand_doc
from workflow.engine import Engine
from workflow.history import verify, verify_instance
from workflow.models import HistoryEvent
from workflow.spec import load_spec

T0 = NOW


def _errand_engine(*, summary_sensitive: bool | None) -> Engine:
    doc = errand_doc(1)
    if summary_sensitive is not None:
        doc["triggers"]["submit"]["fields"]["summary"]["sensitive"] = summary_sensitive
    engine = Engine(guards={"budget_ok": lambda ctx: None}, sealer=Keyring(cipher()))
    engine.register(load_spec(yaml.safe_dump(doc), source="errand.yaml"))
    return engine


@pytest.mark.parametrize("sensitive", [None, False])
def test_the_engine_seals_sensitive_fields_before_hashing_unless_the_protocol_says_not(
        database: Database, sensitive: bool | None) -> None:
    engine = _errand_engine(summary_sensitive=sensitive)
    with database.session() as s:
        instance = engine.start(s, "errand", CLERK, T0, {"amount": 0})
        event = engine.fire(s, instance, "submit", CLERK, {"priority": "high", "summary": "Fetch the post"},
                            T0 + timedelta(minutes=1))
        assert event.plain_data["fields"]["summary"] == "Fetch the post"  # for the host, in this transaction
        s.commit()
        stored = s.get(HistoryEvent, event.id)
        assert stored is not None and stored.hash_version == 2
        summary = stored.data["fields"]["summary"]
        assert stored.data["fields"]["priority"] == "high"  # a choice is never sealed
        if sensitive is False:
            assert summary == "Fetch the post"
        else:
            assert is_sealed(summary) and "Fetch" not in str(summary)
            revealed = event_data(cipher(), s, instance.id, stored.seq, stored.data)
            assert revealed["fields"]["summary"] == "Fetch the post"
        assert verify(s).ok


def test_a_sealed_value_moved_to_another_event_of_the_case_is_refused(
        database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        case = open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment))
        first = advance_case(s, wf, cast.staff, case, "record_consent_and_risk",
                             {"consent": "full", "risk": "standard", "risk_reason": "Named the officer"}, T0)
        view_identity(s, wf, cipher(), cast.lead, case, "to check", T0)
        s.commit()
        token = first.data["fields"]["risk_reason"]
        later = s.scalars(select(HistoryEvent).where(HistoryEvent.kind == "identity_viewed")).one()
        with pytest.raises(IdentityUnreadable, match="another record"):
            event_data(cipher(), s, later.instance_id, later.seq, {"reason": token})


def test_a_destroyed_case_key_leaves_nothing_readable_and_the_history_verifiable(
        database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        case = open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment))
        advance_case(s, wf, cast.staff, case, "record_consent_and_risk",
                     {"consent": "full", "risk": "standard", "risk_reason": "Named the officer"}, T0)
        s.commit()
        assert read_description(cipher(), case) == CANARY_DESCRIPTION
        destroy_key(s, case.instance_id, T0 + timedelta(days=400))
        s.commit()
    with database.session() as s:
        key = s.get(CaseKey, case.instance_id)
        assert key is not None and key.wrapped is None and key.destroyed_at is not None
        fresh = s.get(type(case), case.id)
        assert fresh is not None
        with pytest.raises(KeyDestroyed, match="destroyed"):
            read_description(cipher(), fresh)
        event = s.scalars(select(HistoryEvent).where(HistoryEvent.trigger == "record_consent_and_risk")).one()
        assert SEALED in event.data["fields"]["risk_reason"]
        assert event_data(cipher(), s, event.instance_id, event.seq, event.data)["fields"]["risk_reason"] == ERASED
        assert verify_instance(s, case.instance_id).ok and verify(s).ok


def test_a_domain_engine_without_its_keyring_refuses_to_record_typed_text(database: Database, cast: Cast) -> None:
    bare = build_engine(cipher=cipher())
    bare.sealer = None
    with database.session() as s:
        case = open_case(s, bare, cipher(), cast.staff, T0, case_data(cast.establishment))
        with pytest.raises(RuntimeError, match="no keyring"):
            advance_case(s, bare, cast.staff, case, "record_consent_and_risk",
                         {"consent": "full", "risk": "standard", "risk_reason": "Named the officer"}, T0)
