"""Unmasking with approval, the custodian pattern (PROTOCOL.md "Auditors and identity", issue 13, decision 27).

An auditor who may see a case asks to see who the person is, with a reason (``request_unmask``); an active,
confirmed lead of the owning body who is not the requester approves or refuses it, with a reason
(``decide_unmask``); an approval grants the requester one view within ``APPROVAL_WINDOW``
(``view_unmasked``). Each step is a history event of the case (its reason sealed with the case's key, like
an ``identity_viewed`` reason) and an access-log entry (without the reason); the owning body's leads are told
of a new request and the requester of the decision, in the app, never with identity or a reason.

The ``unmask_requests`` row holds the state the pages need (who asked, who decided, when it was seen) and
the seqs of its history events; expiry is computed (approved and ``now`` after ``decided_at`` +
``APPROVAL_WINDOW``), never stored. Functions flush and never commit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from reprisals import access_log
from reprisals.access import can_view_case, has_access, is_owning_lead
from reprisals.crypto import Cipher
from reprisals.errors import CaseNotFound, InvalidInput, NotAllowed
from reprisals.messaging import Messenger, local_text
from reprisals.models import Case, Role, User
from reprisals.sealing import HOST_SEALED, Keyring
from reprisals.services import Identity, _text, read_identity
from workflow.clock import ensure_utc
from workflow.engine import Engine
from workflow.models import Base, HistoryEvent

APPROVAL_WINDOW = timedelta(hours=24)
MAX_REASON = 500

REQUESTED, APPROVED, REFUSED, VIEWED = "requested", "approved", "refused", "viewed"
STATUSES = (REQUESTED, APPROVED, REFUSED, VIEWED)


class UnmaskRequest(Base):
    """An auditor's request to see who the person of a case is, and what became of it."""

    __tablename__ = "unmask_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    requested_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16))  # requested, approved, refused, viewed
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column()
    viewed_at: Mapped[datetime | None] = mapped_column()
    request_seq: Mapped[int] = mapped_column(Integer)  # the history events of the case
    decision_seq: Mapped[int | None] = mapped_column(Integer)
    view_seq: Mapped[int | None] = mapped_column(Integer)

    def expires_at(self) -> datetime | None:
        """When an approval runs out (None before a decision, and for a refusal)."""
        if self.decided_at is None or self.status not in (APPROVED, VIEWED):
            return None
        return ensure_utc(self.decided_at) + APPROVAL_WINDOW

    def expired(self, now: datetime) -> bool:
        until = self.expires_at()
        return self.status == APPROVED and until is not None and ensure_utc(now) > until

    def is_open(self, now: datetime) -> bool:
        """Waiting for a decision, or approved and still to be used."""
        return self.status == REQUESTED or (self.status == APPROVED and not self.expired(now))

    def may_view(self, now: datetime) -> bool:
        return self.status == APPROVED and not self.expired(now)

    def state_words(self, now: datetime) -> str:
        """The request's state, in words (the auditor's page and the case page)."""
        if self.status == REQUESTED:
            return "Waiting for a lead to decide"
        if self.status == REFUSED:
            return "Refused"
        if self.status == VIEWED:
            return "Approved and seen"
        return "Approved: ran out before it was used" if self.expired(now) else "Approved: you can see it once"


# -- who may --------------------------------------------------------------------------------------


def may_request(user: User, case: Case) -> bool:
    """An active auditor of the owning body (who may see the case). A party body's auditor sees the case but
    never asks: identity is never for a party body's people (decision 22)."""
    return (has_access(user) and user.role is Role.AUDITOR and user.body_code == case.owning_body_code
            and can_view_case(user, case))


def _reason(reason: str | None) -> str:
    errors: dict[str, str] = {}
    clean = _text(errors, {"reason": reason}, "reason", max_length=MAX_REASON)
    if errors or clean is None:
        raise InvalidInput(errors or {"reason": "is required"})
    return clean


def _request_of(session: Session, case: Case, request_id: int) -> UnmaskRequest:
    row = session.get(UnmaskRequest, request_id) if isinstance(request_id, int) else None
    if row is None or row.case_id != case.id:
        raise NotAllowed("There is no such request on this case.")
    return row


# -- the steps ------------------------------------------------------------------------------------


def request_unmask(session: Session, engine: Engine, actor: User, case: Case, now: datetime, *, reason: str | None,
                   via: str = "web", messenger: Messenger | None = None,
                   client: str | None = None) -> UnmaskRequest:
    """Ask to see who the person is. ``CaseNotFound`` for a case the actor may not see, ``NotAllowed`` for
    anyone but an auditor, ``InvalidInput`` for a missing or long reason or a request still open; nothing is
    written then. Tells the owning body's confirmed leads (``messenger``)."""
    if not can_view_case(actor, case):
        raise CaseNotFound(case.reference)
    if not may_request(actor, case):
        raise NotAllowed("Only an auditor can ask to see who the person is.")
    clean = _reason(reason)
    for row in session.scalars(select(UnmaskRequest).where(UnmaskRequest.case_id == case.id,
                                                           UnmaskRequest.requested_by_id == actor.id)):
        if row.is_open(now):
            raise InvalidInput({"reason": "You have already asked to see who the person is on this case: wait for "
                                          "that request to be decided or used"})
    event = engine.append_event(session, case.instance, "unmask_requested", str(actor.id), now,
                                {"reason": clean, **({"via": via} if via != "web" else {})},
                                sealed=HOST_SEALED["unmask_requested"])
    row = UnmaskRequest(case_id=case.id, requested_by_id=actor.id, requested_at=ensure_utc(now), status=REQUESTED,
                        request_seq=event.seq)
    session.add(row)
    session.flush()
    access_log.record(session, now, "unmask_requested", actor=actor, via=via, case_id=case.id, client=client)
    if messenger is not None:
        messenger.unmask_requested(session, case, actor, now)
    return row


def decide_unmask(session: Session, engine: Engine, actor: User, case: Case, now: datetime, *, request_id: int,
                  approve: bool, reason: str | None, via: str = "web", messenger: Messenger | None = None,
                  client: str | None = None) -> UnmaskRequest:
    """Approve or refuse a request waiting for a decision: only a confirmed lead of the owning body, never the
    requester, with a reason. The requester is told in the app."""
    if not can_view_case(actor, case):
        raise CaseNotFound(case.reference)
    if not is_owning_lead(actor, case):
        raise NotAllowed("Only a lead of the body that owns the case can decide a request to see who the "
                         "person is.")
    row = _request_of(session, case, request_id)
    if row.requested_by_id == actor.id:
        raise NotAllowed("You cannot decide your own request.")
    if row.status != REQUESTED:
        raise NotAllowed("This request has been decided already.")
    clean = _reason(reason)
    kind = "unmask_approved" if approve else "unmask_refused"
    event = engine.append_event(session, case.instance, kind, str(actor.id), now,
                                {"request_seq": row.request_seq, "reason": clean,
                                 **({"via": via} if via != "web" else {})},
                                sealed=HOST_SEALED[kind])
    row.status = APPROVED if approve else REFUSED
    row.decided_by_id, row.decided_at, row.decision_seq = actor.id, ensure_utc(now), event.seq
    session.flush()
    access_log.record(session, now, kind, actor=actor, via=via, case_id=case.id, subject=row.requested_by_id,
                      client=client)
    if messenger is not None:
        requester = session.get(User, row.requested_by_id)
        if requester is not None:
            messenger.unmask_decided(session, case, requester, actor, approve, row.expires_at(), now)
    return row


def view_unmasked(session: Session, engine: Engine, cipher: Cipher, actor: User, case: Case, now: datetime, *,
                  request_id: int, via: str = "web", client: str | None = None) -> Identity:
    """The one view an approval grants: only the requester, within ``APPROVAL_WINDOW`` of the approval.
    Decrypts the identity, marks the request seen, and records it (history and access log)."""
    if not can_view_case(actor, case):
        raise CaseNotFound(case.reference)
    row = _request_of(session, case, request_id)
    if row.requested_by_id != actor.id or not may_request(actor, case):
        raise NotAllowed("Only the auditor who asked can use this request.")
    if row.status == VIEWED:
        raise NotAllowed("You have already seen who the person is through this request: an approval is for "
                         "one view. Ask again if you need to see it again.")
    if row.status == REQUESTED:
        raise NotAllowed("This request has not been decided yet.")
    if row.status == REFUSED:
        raise NotAllowed("This request was refused.")
    until = row.expires_at()
    if until is None or ensure_utc(now) > until:
        raise NotAllowed(f"The approval ran out at {local_text(until) if until else 'its end'}. Ask again if "
                         "you still need to see who the person is.")
    identity = read_identity(session, cipher, case)
    event = engine.append_event(session, case.instance, "unmask_viewed", str(actor.id), now,
                                {"request_seq": row.request_seq, **({"via": via} if via != "web" else {})})
    row.status, row.viewed_at, row.view_seq = VIEWED, ensure_utc(now), event.seq
    session.flush()
    access_log.record(session, now, "unmask_viewed", actor=actor, via=via, case_id=case.id, client=client)
    return identity


# -- reading --------------------------------------------------------------------------------------


def requests_for_case(session: Session, case: Case) -> list[UnmaskRequest]:
    """Every request on the case, newest first."""
    return list(session.scalars(select(UnmaskRequest).where(UnmaskRequest.case_id == case.id)
                                .order_by(UnmaskRequest.id.desc())))


def open_requests_for_lead(session: Session, lead: User) -> list[tuple[UnmaskRequest, Case]]:
    """The requests waiting for a decision on the cases the lead's body owns, oldest first (none for
    anyone who may not decide: not a lead, pending, inactive). The lead's own requests are left out."""
    if not (has_access(lead) and lead.role is Role.LEAD and lead.body_code):
        return []
    rows = session.execute(select(UnmaskRequest, Case).join(Case, Case.id == UnmaskRequest.case_id)
                           .where(UnmaskRequest.status == REQUESTED, Case.owning_body_code == lead.body_code,
                                  UnmaskRequest.requested_by_id != lead.id)
                           .order_by(UnmaskRequest.id))
    return [(r, c) for r, c in rows]


def requests_of(session: Session, auditor: User) -> list[tuple[UnmaskRequest, Case]]:
    """An auditor's own requests, newest first, on the cases they may still see."""
    rows = session.execute(select(UnmaskRequest, Case).join(Case, Case.id == UnmaskRequest.case_id)
                           .where(UnmaskRequest.requested_by_id == auditor.id).order_by(UnmaskRequest.id.desc()))
    return [(r, c) for r, c in rows if can_view_case(auditor, c)]


def _reasons(session: Session, cipher: Cipher, case: Case, seqs: Collection[int]) -> dict[int, str]:
    """The reasons typed into the case's events at ``seqs``, decrypted, by seq."""
    keys, out = Keyring(cipher), {}
    for seq, data in session.execute(select(HistoryEvent.seq, HistoryEvent.data).where(
            HistoryEvent.instance_id == case.instance_id, HistoryEvent.seq.in_(seqs))):
        reason = keys.reveal_stored(session, case.instance_id, seq, data).get("reason")
        if reason is not None:
            out[seq] = str(reason)
    return out


def decision_reasons(session: Session, cipher: Cipher, case: Case,
                     rows: Sequence[UnmaskRequest]) -> dict[int, str]:
    """The reasons given for the decisions of ``rows``, by request (the requester's own requests: the caller
    checks)."""
    seqs = {r.decision_seq: r.id for r in rows if r.decision_seq is not None}
    found = _reasons(session, cipher, case, seqs) if seqs else {}
    return {seqs[seq]: reason for seq, reason in found.items()}


def request_reason(session: Session, cipher: Cipher, case: Case, row: UnmaskRequest) -> str | None:
    """The requester's reason, for the lead deciding (a lead of the owning body may read the case's free text)."""
    return _reasons(session, cipher, case, [row.request_seq]).get(row.request_seq)
