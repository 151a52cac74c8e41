"""Sensitive content, shown only inside an unlock window, every view logged (issue 12, decision 24).

What is sensitive on a case: who the person is (identity), the description, the notes, and the free
text of its history — every ``text`` field and every hand-typed ``string`` field of an action, and the
reasons given for identity views, assignments, extensions, pauses, restarts and date corrections — plus
the ground's explanation of a consent override and recipients typed by hand.

The rule, in one place:

- **Unlock.** Only those who may see identity (``access.can_view_identity``: the owning body's leads and
  the assigned staff) unlock, by giving a reason (``unlock``). The unlock is an ``identity_viewed``
  history event with the reason (as before), and an ``unlocked`` access-log entry without it.
- **Window.** For ``UNLOCK_WINDOW`` from that event, for that user and case only (``unlocked_until``),
  everything above is shown to them. The window is derived from history: no table, no migration.
- **Views.** Each read that shows sensitive content inside the window (a page, an API response, a
  command's output) is a ``viewed_sensitive`` access-log entry (``read_sensitive``), never a history
  event: appending to the case's chain would bump its version and make other leads' open forms stale.
- **Before the unlock** a reader gets that things exist (how many notes, which fields were given, that a
  reason was given), never their text.

Every piece of free text is read through :func:`event_text` (history) or the cipher (identity,
description, notes), so that decrypting per-case ciphertext has one place to live.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reprisals import access_log
from reprisals.access import can_view_case, can_view_identity
from reprisals.crypto import Cipher
from reprisals.errors import CaseNotFound
from reprisals.letters import Letter, letters_of
from reprisals.models import Case, CaseNote, Role, User
from reprisals.sealing import SEALED, Keyring, is_sealed
from reprisals.services import (
    Identity,
    read_description,
    read_identity,
    read_note,
    read_override_reason,
    recipient_revealer,
    view_identity,
)
from reprisals.unmasking import VIEWED, UnmaskRequest
from workflow.clock import ensure_utc
from workflow.engine import Engine
from workflow.models import HistoryEvent
from workflow.spec import FieldSpec, FieldType, WorkflowSpec

UNLOCK_WINDOW = timedelta(minutes=30)
UNLOCK_KIND = "identity_viewed"  # the history event that opens a window
FREE_TEXT_TYPES = frozenset({FieldType.TEXT, FieldType.STRING})
# Host events whose data carries a reason a person typed.
REASON_KINDS = frozenset({"identity_viewed", "assigned", "deadline_extended", "deadline_paused", "deadline_resumed",
                          "action_redated", "identity_corrected", "unmask_requested", "unmask_approved",
                          "unmask_refused"})


# -- what is free text --------------------------------------------------------------------------------


def is_free_text(spec: FieldSpec | None) -> bool:
    """Whether an action's field holds what a person typed (``FieldSpec.is_sensitive``: text and hand-typed
    strings unless the protocol says ``sensitive: false``). A field the protocol does not know (an older
    event, a renamed field) counts as free text: unknown means hidden."""
    return spec is None or spec.is_sensitive


@dataclass(frozen=True)
class SealedText:
    """A value of an event's data sealed with the case's key, with the place it was sealed to (its seq and
    path in the data): :func:`event_text` opens it."""

    seq: int
    path: str
    token: str


def _free(event: Any, path: str, value: object) -> object:
    if is_sealed(value):
        assert isinstance(value, dict)
        return SealedText(int(event.seq), path, value[SEALED])
    return value


def event_text(session: Session, cipher: Cipher, case: Case, value: object) -> str:
    """The plaintext of one piece of free text as an event's data holds it (a :class:`SealedText` is opened
    with the case's key): the one reader of free text in history."""
    if isinstance(value, SealedText):
        return str(Keyring(cipher).reveal(session, case.instance_id, f"wf:{case.instance_id}:{value.seq}:{value.path}",
                                          {SEALED: value.token}))
    return value if isinstance(value, str) else str(value)


def split_event(spec: WorkflowSpec, event: Any) -> tuple[dict[str, Any], dict[str, object]]:
    """An event's data as (what anyone who may see the case may read, the free text by name — field names
    for an action's fields, ``reason`` for a host event's reason). ``event`` is a ``HistoryEvent`` or a row
    with ``kind``, ``trigger`` and ``data``. Free text values are as stored: read them with :func:`event_text`."""
    data = dict(event.data or {}) if isinstance(event.data, Mapping) else {}
    free: dict[str, object] = {}
    if event.kind in ("created", "transition") and isinstance(data.get("fields"), Mapping):
        trig = spec.triggers.get(event.trigger or "")
        fields = dict(data["fields"])
        for name in list(fields):
            if is_free_text(trig.fields.get(name) if trig else None):
                value = fields.pop(name)
                if value not in (None, ""):
                    free[name] = _free(event, f"fields.{name}", value)
        data["fields"] = fields
    if event.kind in REASON_KINDS and "reason" in data:
        value = data.pop("reason")
        if value not in (None, ""):
            free["reason"] = _free(event, "reason", value)
    return data, free


# -- the window ---------------------------------------------------------------------------------------


def _open_unlock(session: Session, user: User, case: Case, now: datetime) -> Any:
    """The ``identity_viewed`` event (``at``, ``data``) whose window is open for ``user`` at ``now``, or None."""
    if not can_view_identity(user, case):
        return None
    h = HistoryEvent
    row = session.execute(select(h.seq, h.at, h.data).where(
        h.instance_id == case.instance_id, h.kind == UNLOCK_KIND, h.actor_id == str(user.id))
        .order_by(h.seq.desc()).limit(1)).first()
    if row is None:
        return None
    at = ensure_utc(row.at)
    return row if at <= ensure_utc(now) < at + UNLOCK_WINDOW else None


def unlocked_until(session: Session, user: User, case: Case, now: datetime) -> datetime | None:
    """When ``user``'s unlock of ``case`` ends, if one is open at ``now``: the latest ``identity_viewed``
    event they recorded on it, plus ``UNLOCK_WINDOW``. None for anyone who may not see identity now
    (a member of staff since unassigned loses it at once). One indexed query; reads only."""
    row = _open_unlock(session, user, case, now)
    return ensure_utc(row.at) + UNLOCK_WINDOW if row is not None else None


def unlock(session: Session, engine: Engine, cipher: Cipher, user: User, case: Case, reason: str, now: datetime,
           *, via: str = "web", client: str | None = None) -> datetime:
    """Open a window: the reasoned ``identity_viewed`` history event (``services.view_identity`` checks who
    may and the reason: ``CaseNotFound``, ``NotAllowed``, ``InvalidInput`` and nothing written) and an
    ``unlocked`` access-log entry (without the reason). Flushes; the caller commits. ``via='cli'``: the
    operator, acting as ``user``, which the event records too. Returns when the window ends."""
    view_identity(session, engine, cipher, user, case, reason, now, via=via)
    access_log.record(session, now, "unlocked", actor=user, via=via, case_id=case.id, client=client)
    return ensure_utc(now) + UNLOCK_WINDOW


# -- reading ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteText:
    id: int
    author_id: int
    at: datetime
    text: str


@dataclass
class Sensitive:
    """What one user may see of one case's sensitive content at one moment (``read_sensitive``). Outside a
    window ``identity``, ``description`` and ``notes`` are None and :meth:`text` gives None."""

    case: Case
    may_unlock: bool  # may see identity, so may unlock (whether or not unlocked now)
    until: datetime | None  # the end of the open window, or None
    note_count: int
    unlocked_at: datetime | None = None
    reason: str | None = None  # the reason given for the open window
    identity: Identity | None = None
    description: str | None = None
    notes: list[NoteText] | None = None
    _session: Session | None = field(default=None, repr=False)
    _cipher: Cipher | None = field(default=None, repr=False)

    @property
    def unlocked(self) -> bool:
        return self.until is not None

    def text(self, value: object) -> str | None:
        """Free text from history (a value :func:`split_event` set apart), or None outside the window."""
        if not self.unlocked or self._session is None or self._cipher is None:
            return None
        return event_text(self._session, self._cipher, self.case, value)

    def override_reason(self) -> str | None:
        """The consent override shown on the case: its ground (a choice, anyone may read), with the
        explanation typed for it only inside the window."""
        stored = self.case.consent_override_reason
        if not stored:
            return None
        ground, _, typed = stored.partition(": ")
        if self.unlocked and typed and self._session is not None and self._cipher is not None:
            return f"{ground}: {read_override_reason(self._cipher, self.case)}"
        return ground


def read_sensitive(session: Session, cipher: Cipher, user: User, case: Case, now: datetime, *, via: str,
                   what: str, client: str | None = None, reveal: bool = True) -> Sensitive:
    """What ``user`` may see of ``case``'s sensitive content at ``now``. Inside their window it is decrypted
    and the view is a ``viewed_sensitive`` access-log entry (``what``: the page or read, in a few words) in the
    caller's transaction — the caller shows it, so it commits it. Outside, or with ``reveal`` false (the
    command without ``--reason``), only counts, and nothing is logged. A case the user may not see is
    ``CaseNotFound``."""
    if not can_view_case(user, case):
        raise CaseNotFound(case.reference)
    note_rows = list(session.scalars(select(CaseNote).where(CaseNote.case_id == case.id)
                                     .order_by(CaseNote.at.desc(), CaseNote.id.desc())))
    may = can_view_identity(user, case)
    opened = _open_unlock(session, user, case, now) if may and reveal else None
    view = Sensitive(case=case, may_unlock=may, until=None, note_count=len(note_rows), _session=session,
                     _cipher=cipher)
    if opened is None:
        return view
    view.unlocked_at = ensure_utc(opened.at)
    view.until = view.unlocked_at + UNLOCK_WINDOW
    reason = (opened.data or {}).get("reason")
    view.reason = view.text(_free(opened, "reason", reason)) if reason not in (None, "") else None
    view.identity = read_identity(session, cipher, case)
    view.description = read_description(cipher, case)
    view.notes = [NoteText(n.id, n.author_id, ensure_utc(n.at), read_note(cipher, n)) for n in note_rows]
    access_log.record(session, now, "viewed_sensitive", actor=user, via=via, case_id=case.id, client=client,
                      detail={"read": what})
    return view


# -- who has seen -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One unlock of the case: who, when, why (None outside the viewer's own window), from where, and the
    moments its views were shown."""

    user_id: int | None
    unlocked_at: datetime
    until: datetime
    reason: str | None
    reason_given: bool
    via: str
    views: list[datetime]
    through_request: bool = False  # an auditor's one view through a request a lead approved (reprisals.unmasking)
    approved_by: int | None = None


def may_see_who_has_seen(user: User, case: Case) -> bool:
    """The owning body's leads."""
    return user.active and user.role is Role.LEAD and user.body_code == case.owning_body_code


def who_has_seen(session: Session, viewer: Sensitive, case: Case) -> list[Seen]:
    """Every unlock of ``case``, newest first, with the views inside its window (from the access log). The
    reasons are free text: given only inside the viewer's own window (``viewer``). Reads only."""
    h = HistoryEvent
    unlocks = list(session.execute(select(h.seq, h.actor_id, h.at, h.data).where(
        h.instance_id == case.instance_id, h.kind == UNLOCK_KIND).order_by(h.seq)))
    views: dict[int | None, list[datetime]] = {}
    for entry in access_log.entries(session, case_id=case.id, kind="viewed_sensitive", limit=None):
        views.setdefault(entry.actor_id, []).append(ensure_utc(entry.at))
    out: list[Seen] = []
    for i, row in enumerate(unlocks):
        uid = int(row.actor_id) if row.actor_id and str(row.actor_id).isdigit() else None
        start = ensure_utc(row.at)
        # A window ends early when the same user unlocks again: each view belongs to one unlock.
        later = next((ensure_utc(r.at) for r in unlocks[i + 1:] if r.actor_id == row.actor_id), None)
        end = start + UNLOCK_WINDOW
        counted_to = min(end, later) if later is not None else end
        data = row.data or {}
        reason = data.get("reason")
        shown = viewer.text(_free(row, "reason", reason)) if reason not in (None, "") else None
        out.append(Seen(uid, start, end, shown,
                        reason not in (None, ""), str(data.get("via") or "web"),
                        sorted(v for v in views.get(uid, []) if start <= v < counted_to)))
    out += _unmask_views(session, viewer, case)
    out.sort(key=lambda seen: seen.unlocked_at, reverse=True)
    return out


def _unmask_views(session: Session, viewer: Sensitive, case: Case) -> list[Seen]:
    """The views granted by approved requests (``reprisals.unmasking``): who, when, approved by whom, and
    why they asked (inside the viewer's own window)."""
    h = HistoryEvent
    rows = list(session.scalars(select(UnmaskRequest).where(UnmaskRequest.case_id == case.id,
                                                            UnmaskRequest.status == VIEWED)))
    if not rows:
        return []
    reasons = {r.seq: r for r in session.execute(select(h.seq, h.data).where(
        h.instance_id == case.instance_id, h.seq.in_([r.request_seq for r in rows])))}
    out: list[Seen] = []
    for r in rows:
        assert r.viewed_at is not None
        event = reasons.get(r.request_seq)
        reason = (event.data or {}).get("reason") if event is not None else None
        shown = viewer.text(_free(event, "reason", reason)) if reason not in (None, "") else None
        at = ensure_utc(r.viewed_at)
        out.append(Seen(r.requested_by_id, at, at, shown, reason not in (None, ""), "web", [at],
                        through_request=True, approved_by=r.decided_by_id))
    return out


def letters_for(view: Sensitive) -> list[Letter]:
    """The case's letters as ``view``'s reader may see them: recipients typed by hand only inside the window."""
    assert view._session is not None and view._cipher is not None
    if view.unlocked:
        return letters_of(view._session, view.case, recipient_revealer(view._cipher, view._session, view.case))
    return [replace(letter, hidden=True) for letter in letters_of(view._session, view.case)]
