"""Sign-in throttling (reprisals.accounts.sign_in): growing waits per account and address and per
address, counted in buckets; an account under attack only from addresses it has signed in from, its
owner told once; the client address counted as its network.

The victims' stored hashes are argon2 with small parameters (as an account made before the parameters
were raised would have), so that the fifty failures an attack needs do not cost fifty full hashes; the
hash is upgraded at the first sign-in, as any old hash is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from notifications.models import OutboxMessage
from reprisals.access_log import AccessEntry, client_digest
from reprisals.accounts import (
    FREE_FAILURES,
    FREE_FAILURES_PER_CLIENT,
    THROTTLE_LOOKBACK,
    UNDER_ATTACK,
    RefusedFromNewAddress,
    SignedIn,
    SignInBucket,
    Throttled,
    client_network,
    sign_in,
    signed_in_from,
)
from reprisals.messaging import Messenger, message_templates
from reprisals.models import User
from reprisals.passwords import needs_rehash
from tests.conftest import DATABASES
from tests.reprisals.conftest import Cast

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "the owner's own password"
HOME = "192.0.2.10"
MESSENGER = Messenger("https://reprisals.example.test")


def _weak_hash(session: Session, user: User) -> str:
    row = session.get(User, user.id)
    assert row is not None
    row.password_hash = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    session.commit()
    return row.email


def _try(session: Session, email: str, password: str, client: str, now: datetime) -> SignedIn | Throttled | None:
    """One attempt as the sign-in view makes it: the answer (or the refusal), then commit."""
    try:
        result: SignedIn | Throttled | None = sign_in(session, email, password, client, now, messenger=MESSENGER)
    except Throttled as exc:
        result = exc
    session.commit()
    return result


def test_waits_grow_from_one_minute_and_only_the_guessing_address_waits(session: Session, cast: Cast) -> None:
    email = _weak_hash(session, cast.staff)
    now = START
    answers = [_try(session, email, f"guess {i}", "198.51.100.7", now) for i in range(FREE_FAILURES)]
    assert answers == [None] * FREE_FAILURES

    waits = []
    for _ in range(4):
        refused = _try(session, email, PASSWORD, "198.51.100.7", now)  # even the right password waits
        assert isinstance(refused, Throttled) and not isinstance(refused, RefusedFromNewAddress)
        waits.append(refused.retry_after)
        now += timedelta(seconds=refused.retry_after - 1)
        assert isinstance(_try(session, email, PASSWORD, "198.51.100.7", now), Throttled)  # a second early
        now += timedelta(seconds=1)
        assert _try(session, email, "another guess", "198.51.100.7", now) is None  # counted: the wait doubles
    assert waits == [60, 120, 240, 480]
    assert str(refused) == "Too many failed attempts to sign in. Wait 8 minutes and try again."

    # Nothing was counted while waiting: one bucket row per window, its count the failures answered.
    rows = session.execute(sa.select(SignInBucket.failures, SignInBucket.refused)).all()
    assert sum(f for f, _ in rows) == FREE_FAILURES + 4 and all(r == 0 for _, r in rows)
    assert len(rows) <= 2

    # The owner, from their own address, is not held up by the guesser; their success forgives nothing else.
    assert isinstance(_try(session, email, PASSWORD, HOME, now), SignedIn)
    assert isinstance(_try(session, email, PASSWORD, "198.51.100.7", now), Throttled)
    assert not needs_rehash(session.get(User, cast.staff.id).password_hash)  # type: ignore[union-attr]


def test_one_address_guessing_many_accounts_waits_and_an_unknown_account_is_answered_alike(
        session: Session, cast: Cast) -> None:
    now = START
    accounts = [_weak_hash(session, u) for u in (cast.lead, cast.staff, cast.auditor)] + [
        f"nobody{i}@example.test" for i in range(3)]
    answers = []
    for i in range(FREE_FAILURES_PER_CLIENT):
        answers.append(_try(session, accounts[i % len(accounts)], f"guess {i}", "198.51.100.8", now))
        now += timedelta(seconds=1)
    assert answers == [None] * FREE_FAILURES_PER_CLIENT
    known = _try(session, accounts[0], PASSWORD, "198.51.100.8", now)
    unknown = _try(session, "someone-new@example.test", PASSWORD, "198.51.100.8", now)
    assert isinstance(known, Throttled) and isinstance(unknown, Throttled)
    assert (type(known), str(known), known.retry_after) == (type(unknown), str(unknown), unknown.retry_after)
    assert known.retry_after == 59  # a minute after the last failure, a second ago


def test_an_ipv6_client_is_counted_as_its_64_network() -> None:
    assert client_network("2001:db8:1:2:aaaa::1") == client_network("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_network("2001:db8:1:3::1") != client_network("2001:db8:1:2::1")
    assert client_network("::ffff:198.51.100.7") == client_network("198.51.100.7") == "198.51.100.7"
    assert client_network("unknown") == "unknown"


def test_an_account_under_attack_is_refused_only_from_new_addresses_and_its_owner_is_told_once(
        session: Session, cast: Cast) -> None:
    email = _weak_hash(session, cast.staff)
    now = START
    signed_in_from(session, cast.staff, HOME, now - timedelta(days=30))  # (a sign-in would upgrade the hash)
    session.commit()

    # Fifty failures from ten addresses, none of which ever has to wait.
    for i in range(UNDER_ATTACK):
        now += timedelta(seconds=10)
        assert _try(session, email, f"guess {i}", f"198.51.100.{i % 10 + 20}", now) is None
    # The real password, from a new address (or one that only ever guessed): refused, before it is checked.
    refused = _try(session, email, PASSWORD, "203.0.113.7", now)
    again = _try(session, email, PASSWORD, "203.0.113.7", now + timedelta(seconds=1))
    assert isinstance(refused, RefusedFromNewAddress) and isinstance(again, RefusedFromNewAddress)
    assert refused.retry_after == pytest.approx(THROTTLE_LOOKBACK.total_seconds(), abs=20 * 60)
    assert str(refused).startswith("There have been many failed attempts to sign in to this account, so for now it "
                                   "can only be signed in to from a network it has been signed in from before.")
    assert str(refused).endswith("or try again in 24 hours.")
    assert isinstance(_try(session, email, PASSWORD, "198.51.100.20", now), RefusedFromNewAddress)
    # The owner, from where they signed in before, signs in.
    assert isinstance(_try(session, email, PASSWORD, HOME, now), SignedIn)

    # Told once (in the app and by e-mail), with neither the addresses nor anything about who tried.
    told = list(session.scalars(sa.select(OutboxMessage).where(OutboxMessage.template == "sign_in_attack")))
    staff = session.get(User, cast.staff.id)
    assert staff is not None
    assert sorted((m.channel, m.recipient) for m in told) == sorted([("inapp", str(staff.id)), ("log", staff.email)])
    rendered = message_templates().render("sign_in_attack", told[0].context)
    for text in (rendered.subject, rendered.text, rendered.html, str(told[0].context)):
        assert "198.51" not in text and "203.0" not in text and "192.0" not in text
    assert "50 or more failed attempts" in rendered.text and "/account" in rendered.text

    # One refusal entry per address and window, with the address hashed; the owner's sign-ins logged.
    entries = session.execute(sa.select(AccessEntry.kind, AccessEntry.subject_user_id, AccessEntry.actor_id,
                                        AccessEntry.client_hash).order_by(AccessEntry.id)).all()
    assert [(k, c) for k, s, a, c in entries if k == "sign_in_refused"] == [
        ("sign_in_refused", client_digest("203.0.113.7")), ("sign_in_refused", client_digest("198.51.100.20"))]
    assert all(s == staff.id and a is None for k, s, a, _ in entries if k == "sign_in_refused")
    signed_in = [(a, c) for k, _, a, c in entries if k == "signed_in"]
    assert signed_in == [(staff.id, client_digest(HOME))] * 2  # the one before, and the one just now

    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 2

    # Once the failures leave the lookback, the new address may try again.
    later = _try(session, email, PASSWORD, "203.0.113.7", START + THROTTLE_LOOKBACK + timedelta(minutes=20))
    assert isinstance(later, SignedIn)


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # the rule, not the database: one is enough
def test_an_account_that_does_not_exist_is_refused_alike_when_attacked_alike(session: Session, cast: Cast) -> None:
    email = _weak_hash(session, cast.staff)
    answers: dict[str, list[object]] = {}
    for n, account in enumerate((email, "ghost@example.test")):
        now = START + timedelta(hours=2) * n  # each attack from the start of a window
        for i in range(UNDER_ATTACK):
            now += timedelta(seconds=10)
            assert _try(session, account, f"guess {i}", f"198.51.100.{i % 10 + 20}", now) is None
        refused = _try(session, account, PASSWORD, "203.0.113.7", now)
        assert isinstance(refused, RefusedFromNewAddress)
        answers[account] = [type(refused), str(refused), refused.retry_after]
    assert answers[email] == answers["ghost@example.test"]
    # Nobody is told about an account that does not exist, and its refusals are not logged.
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 2
    assert session.scalar(sa.select(sa.func.count()).select_from(AccessEntry)) == 1
