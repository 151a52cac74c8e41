"""Two-factor sign-in: a TOTP app (RFC 6238) after the password, one-time recovery codes, and resets
that take two people (or the operator).

* A user's credential is a ``two_factor_credentials`` row: the TOTP secret as ciphertext sealed to
  ``totp:<user id>`` (reprisals.crypto), ``enrolled_at`` (``None`` while being set up: the secret shown
  is kept until a code from it is given), the last time-step accepted (a code works once: a step is
  accepted only if it is later than the last) and the wrong codes given since ``wrong_since``.
* A browser session (``web_sessions``) starts with the password only; ``two_factor_at`` is set when it
  gives a code or a recovery code, or sets two-factor sign-in up. :func:`second_step` says what a
  session still owes: in production every account must set it up and give a code; elsewhere only an
  account that has set it up is asked. Until then the session reaches only the second-step pages.
* Wrong codes (from the app or recovery codes) are counted per account: after ``MAX_WRONG`` within
  ``WRONG_WINDOW`` further codes are refused until the window has passed (the password alone is not
  enough to guess a 6-digit code at 5 tries a quarter of an hour).
* Recovery codes: ``RECOVERY_CODES`` of them, 80 random bits each, shown once and stored as SHA-256
  (with that much entropy a fast hash cannot be searched); each works once.
* A lost device: for a member of a body, an admin asks (:func:`ask_reset`) and a lead of that body
  approves (:func:`approve_reset`) — two people, neither the account's owner; an administrator's is
  reset only by the operator (``reprisals users reset-2fa``, :func:`reset`). A reset deletes the
  credential and the codes and ends the account's sessions. Everything is in the access log.

Claims that must hold under concurrency (a time-step, a recovery code, a wrong-code count) are single
compare-and-set UPDATE statements, so two requests with one code cannot both succeed.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import pyotp
from sqlalchemy import ForeignKey, Index, Integer, String, Text, delete, func, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from reprisals import access_log
from reprisals.accounts import WebSession, end_all_sessions
from reprisals.crypto import Cipher
from reprisals.errors import IdentityUnreadable, NotAllowed, ReprisalsError
from reprisals.models import Role, User
from workflow.clock import ensure_utc
from workflow.models import Base

ISSUER = "Reprisals case tracker"
VALID_WINDOW = 1  # one 30-second step either side, for clocks a little out
MAX_WRONG = 5
WRONG_WINDOW = timedelta(minutes=15)
RECOVERY_CODES = 10
RESET_LAPSES = timedelta(days=7)  # an admin's request not approved by then must be asked again
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
_CODE_LENGTH = 16  # 16 * log2(31): about 79 bits


class TwoFactorCredential(Base):
    __tablename__ = "two_factor_credentials"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, autoincrement=False)
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    enrolled_at: Mapped[datetime | None] = mapped_column()
    last_step: Mapped[int | None] = mapped_column(Integer)
    wrong_codes: Mapped[int] = mapped_column(Integer, default=0)
    wrong_since: Mapped[datetime | None] = mapped_column()


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_user_id_code_hash", "user_id", "code_hash", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()


class TwoFactorReset(Base):
    """An admin's request to reset a body member's two-factor sign-in, until a lead of the body approves
    or declines it (or it lapses)."""

    __tablename__ = "two_factor_resets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    asked_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    asked_at: Mapped[datetime] = mapped_column()
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str | None] = mapped_column(String(16))  # approved, declined

    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined", innerjoin=True)
    asked_by: Mapped[User] = relationship(foreign_keys=[asked_by_id], lazy="joined", innerjoin=True)


# -- errors --------------------------------------------------------------------------------------------


class WrongCode(ReprisalsError):
    """A code that is not right (or was used already); the message says what to do."""


class TooManyWrongCodes(ReprisalsError):
    def __init__(self, seconds: int) -> None:
        self.seconds = max(1, seconds)
        minutes = math.ceil(self.seconds / 60)
        super().__init__(f"Too many wrong codes. Wait {minutes} minute{'s' if minutes != 1 else ''} and try again.")


# -- what a session still owes ---------------------------------------------------------------------------


def credential_of(session: Session, user: User | int) -> TwoFactorCredential | None:
    return session.get(TwoFactorCredential, user.id if isinstance(user, User) else user)


def is_enrolled(session: Session, user: User | int) -> bool:
    cred = credential_of(session, user)
    return cred is not None and cred.enrolled_at is not None


def second_step(session: Session, web_session: WebSession, *, required: bool) -> Literal["enrol", "code"] | None:
    """What the session must do before it counts as signed in: ``"code"`` (give a code: the account has
    two-factor sign-in), ``"enrol"`` (set it up: ``required``, i.e. production), or ``None``."""
    if web_session.two_factor_at is not None:
        return None
    if is_enrolled(session, web_session.user_id):
        return "code"
    return "enrol" if required else None


def has_second_factor(web_session: WebSession) -> bool:
    """Whether this browser session gave a second factor (what creating an API token needs)."""
    return web_session.two_factor_at is not None


# -- setting it up ---------------------------------------------------------------------------------------


def _scope(user_id: int) -> str:
    return f"totp:{user_id}"


@dataclass(frozen=True)
class Enrolment:
    secret: str  # base32, for typing into an app
    uri: str  # otpauth://, for the QR code


def begin_enrolment(session: Session, cipher: Cipher, user: User, now: datetime) -> Enrolment:
    """The secret to set up an app with: a new one, or the one shown before if it has not been confirmed
    yet (a page reloaded after scanning keeps working). Refused if two-factor sign-in is set up."""
    cred = credential_of(session, user)
    if cred is not None and cred.enrolled_at is not None:
        raise NotAllowed("Two-factor sign-in is already set up for this account.")
    secret: str | None = None
    if cred is not None:
        try:
            secret = cipher.decrypt(_scope(user.id), cred.secret_ciphertext)
        except IdentityUnreadable:
            secret = None  # a key removed since: start again
    if secret is None:
        secret = pyotp.random_base32()
        sealed = cipher.encrypt(_scope(user.id), secret)
        if cred is None:
            session.add(TwoFactorCredential(user_id=user.id, secret_ciphertext=sealed, created_at=ensure_utc(now),
                                            wrong_codes=0))
        else:
            cred.secret_ciphertext, cred.created_at = sealed, ensure_utc(now)
        session.flush()
    return Enrolment(secret, pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER))


def confirm_enrolment(session: Session, cipher: Cipher, web_session: WebSession, code: str, now: datetime, *,
                      client: str | None = None) -> list[str]:
    """Finish setting up with a code from the app: the account now has two-factor sign-in, this session
    has given its second factor, and the recovery codes (returned, to be shown once) replace any before.
    :class:`WrongCode` if the code is not the app's current one."""
    now = ensure_utc(now)
    user = web_session.user
    cred = credential_of(session, user)
    if cred is None or cred.enrolled_at is not None:
        raise NotAllowed("Two-factor sign-in is already set up for this account." if cred else
                         "Start setting up two-factor sign-in again.")
    _check_allowed(cred, now)
    step = _matching_step(cipher, cred, code, now)
    if step is None or not _claim_step(session, cred, step):
        _count_wrong(session, cred, now)
        raise WrongCode("The code is not correct. Enter the 6-digit code your app shows now for this service.")
    cred.enrolled_at = now
    _clear_wrong(session, cred)
    web_session.two_factor_at = now
    codes = _new_recovery_codes(session, user, now)
    access_log.record(session, now, "two_factor_enrolled", actor=user, subject=user, client=client)
    return codes


# -- the second step ---------------------------------------------------------------------------------------


def _normalise_digits(code: str) -> str:
    return "".join(code.split()).replace("-", "")


def _matching_step(cipher: Cipher, cred: TwoFactorCredential, code: str, now: datetime) -> int | None:
    digits = _normalise_digits(code)
    if len(digits) != 6 or not digits.isdigit():
        return None
    try:
        secret = cipher.decrypt(_scope(cred.user_id), cred.secret_ciphertext)
    except IdentityUnreadable:
        raise WrongCode("Your two-factor sign-in cannot be checked. Use a recovery code, or ask an "
                        "administrator to reset it.") from None
    try:
        return pyotp.TOTP(secret).verify_and_get_timecode(digits, for_time=now, valid_window=VALID_WINDOW)
    except pyotp.exceptions.OTPVerificationError:
        return None


def _claim_step(session: Session, cred: TwoFactorCredential, step: int) -> bool:
    """Accept ``step`` only if it is later than the last accepted one — in one statement, so two
    requests with the same code cannot both pass."""
    t = TwoFactorCredential
    result = session.execute(update(t).where(t.user_id == cred.user_id, or_(t.last_step.is_(None), t.last_step < step))
                             .values(last_step=step).execution_options(synchronize_session=False))
    claimed = bool(getattr(result, "rowcount", 0))
    if claimed:
        session.refresh(cred)
    return claimed


def _check_allowed(cred: TwoFactorCredential, now: datetime) -> None:
    if cred.wrong_codes >= MAX_WRONG and cred.wrong_since is not None:
        until = ensure_utc(cred.wrong_since) + WRONG_WINDOW
        if now < until:
            raise TooManyWrongCodes(math.ceil((until - now).total_seconds()))


def _count_wrong(session: Session, cred: TwoFactorCredential, now: datetime) -> None:
    t = TwoFactorCredential
    if cred.wrong_since is None or now - ensure_utc(cred.wrong_since) >= WRONG_WINDOW:
        session.execute(update(t).where(t.user_id == cred.user_id).values(wrong_codes=1, wrong_since=now)
                        .execution_options(synchronize_session=False))
    else:
        session.execute(update(t).where(t.user_id == cred.user_id).values(wrong_codes=t.wrong_codes + 1)
                        .execution_options(synchronize_session=False))
    session.refresh(cred)
    if cred.wrong_codes == MAX_WRONG:
        access_log.record(session, now, "two_factor_locked", subject=cred.user_id)


def _clear_wrong(session: Session, cred: TwoFactorCredential) -> None:
    cred.wrong_codes, cred.wrong_since = 0, None
    session.flush()


def verify_code(session: Session, cipher: Cipher, web_session: WebSession, code: str, now: datetime) -> None:
    """The second step with the app's code: the session has given its second factor. :class:`WrongCode`
    (counted; the caller commits so the count holds) or :class:`TooManyWrongCodes` (nothing counted)."""
    now = ensure_utc(now)
    cred = credential_of(session, web_session.user_id)
    if cred is None or cred.enrolled_at is None:
        raise NotAllowed("This account has no two-factor sign-in to check.")
    _check_allowed(cred, now)
    step = _matching_step(cipher, cred, code, now)
    if step is None:
        _count_wrong(session, cred, now)
        raise WrongCode("The code is not correct. Enter the 6-digit code your app shows now for this service.")
    if not _claim_step(session, cred, step):
        _count_wrong(session, cred, now)
        raise WrongCode("That code has been used already. Wait for your app to show a new code and enter it.")
    _clear_wrong(session, cred)
    web_session.two_factor_at = now


def use_recovery_code(session: Session, web_session: WebSession, code: str, now: datetime, *,
                      client: str | None = None) -> int:
    """The second step with a recovery code, which then never works again. Returns how many are left.
    Wrong ones count like wrong app codes."""
    now = ensure_utc(now)
    cred = credential_of(session, web_session.user_id)
    if cred is None or cred.enrolled_at is None:
        raise NotAllowed("This account has no two-factor sign-in to check.")
    _check_allowed(cred, now)
    wanted = _recovery_hash(code)
    row = None if wanted is None else session.scalars(select(RecoveryCode).where(
        RecoveryCode.user_id == web_session.user_id, RecoveryCode.code_hash == wanted)).one_or_none()
    claimed = False
    if row is not None:
        result = session.execute(update(RecoveryCode).where(RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None))
                                 .values(used_at=now).execution_options(synchronize_session=False))
        claimed = bool(getattr(result, "rowcount", 0))
    if not claimed:
        _count_wrong(session, cred, now)
        if row is not None:
            raise WrongCode("That recovery code has been used already. Each code works once: enter another.")
        raise WrongCode("The recovery code is not correct. Enter one of the codes you were given when you set up "
                        "two-factor sign-in, for example ABCD-EFGH-JKMN-PQRS.")
    _clear_wrong(session, cred)
    web_session.two_factor_at = now
    left = recovery_codes_left(session, web_session.user_id)
    access_log.record(session, now, "recovery_code_used", actor=web_session.user_id, subject=web_session.user_id,
                      client=client, detail={"codes_left": left})
    return left


# -- recovery codes --------------------------------------------------------------------------------------


def _format_code(raw: str) -> str:
    return "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))


def _recovery_hash(code: str) -> str | None:
    raw = "".join(c for c in code.upper() if c.isalnum())
    if len(raw) != _CODE_LENGTH or any(c not in _CODE_ALPHABET for c in raw):
        return None
    return hashlib.sha256(("recovery:" + raw).encode()).hexdigest()


def _new_recovery_codes(session: Session, user: User, now: datetime) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_format_code("".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH)))
             for _ in range(RECOVERY_CODES)]
    for code in codes:
        session.add(RecoveryCode(user_id=user.id, code_hash=_recovery_hash(code), created_at=now))
    session.flush()
    return codes


def renew_recovery_codes(session: Session, web_session: WebSession, now: datetime, *,
                         client: str | None = None) -> list[str]:
    """New recovery codes (to be shown once); the old ones stop working. Only from a session that gave
    its second factor."""
    if web_session.two_factor_at is None or not is_enrolled(session, web_session.user_id):
        raise NotAllowed("Sign in with two-factor sign-in to make new recovery codes.")
    now = ensure_utc(now)
    codes = _new_recovery_codes(session, web_session.user, now)
    access_log.record(session, now, "recovery_codes_renewed", actor=web_session.user, subject=web_session.user,
                      client=client)
    return codes


def recovery_codes_left(session: Session, user: User | int) -> int:
    user_id = user.id if isinstance(user, User) else user
    return int(session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))) or 0)


# -- resets -----------------------------------------------------------------------------------------------


def reset(session: Session, user: User, now: datetime, *, actor: User | None, via: str,
          detail: dict[str, int] | None = None, client: str | None = None) -> bool:
    """Remove the user's two-factor sign-in (credential and recovery codes) and end their sessions; they
    set it up again at their next sign-in. Returns False (and logs nothing) if there was nothing to
    reset. The operator (``actor=None``, ``via="cli"``) may reset anyone's; the services below are the
    checked way for people."""
    now = ensure_utc(now)
    cred = credential_of(session, user)
    if cred is None:
        return False
    was_enrolled = cred.enrolled_at is not None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    session.delete(cred)
    session.flush()
    if not was_enrolled:
        return False
    end_all_sessions(session, user, now, "two_factor_reset")
    access_log.record(session, now, "two_factor_reset", actor=actor, via=via, subject=user, client=client,
                      detail=detail or {})
    return True


def _refuse_unless_resettable(session: Session, admin: User, target: User) -> None:
    if admin.role is not Role.ADMIN:
        raise NotAllowed("Only an administrator can ask for a reset.")
    if target.role is Role.ADMIN or target.body_code is None:
        raise NotAllowed("An administrator's two-factor sign-in can only be reset by the operator, on the "
                         "server: reprisals users reset-2fa EMAIL.")
    if not is_enrolled(session, target):
        raise NotAllowed(f"{target.name} has not set up two-factor sign-in: there is nothing to reset.")


def pending_reset(session: Session, target: User, now: datetime) -> TwoFactorReset | None:
    """The live request to reset ``target``'s two-factor sign-in, if any."""
    return session.scalars(select(TwoFactorReset).where(
        TwoFactorReset.user_id == target.id, TwoFactorReset.outcome.is_(None),
        TwoFactorReset.asked_at > ensure_utc(now) - RESET_LAPSES).order_by(TwoFactorReset.id.desc())).first()


def ask_reset(session: Session, admin: User, target: User, now: datetime, *, client: str | None = None
              ) -> TwoFactorReset:
    """An administrator asks for a body member's two-factor sign-in to be reset (the member lost their
    device); a lead of the member's body must approve it."""
    _refuse_unless_resettable(session, admin, target)
    if pending_reset(session, target, now) is not None:
        raise NotAllowed(f"A reset of {target.name}’s two-factor sign-in has been asked for already: a lead "  # noqa: RUF001
                         f"of {target.body_code} must approve it.")
    row = TwoFactorReset(user_id=target.id, asked_by_id=admin.id, asked_at=ensure_utc(now))
    session.add(row)
    session.flush()
    access_log.record(session, now, "two_factor_reset_asked", actor=admin, subject=target, client=client,
                      detail={"request": row.id})
    return row


def resets_to_decide(session: Session, lead: User, now: datetime) -> list[TwoFactorReset]:
    """The live requests a lead may approve: members of the lead's body other than the lead."""
    if lead.role is not Role.LEAD or lead.body_code is None:
        return []
    return list(session.scalars(
        select(TwoFactorReset).join(User, User.id == TwoFactorReset.user_id)
        .where(User.body_code == lead.body_code, User.id != lead.id, TwoFactorReset.outcome.is_(None),
               TwoFactorReset.asked_at > ensure_utc(now) - RESET_LAPSES)
        .order_by(TwoFactorReset.asked_at)))


def _decidable(session: Session, lead: User, reset_id: int, now: datetime) -> TwoFactorReset:
    row = session.get(TwoFactorReset, reset_id)
    if row is None or row not in resets_to_decide(session, lead, now):
        raise NotAllowed("There is no such request for you to decide (it may have been decided or have lapsed).")
    return row


def approve_reset(session: Session, lead: User, reset_id: int, now: datetime, *, client: str | None = None
                  ) -> TwoFactorReset:
    """A lead of the member's body approves: the reset happens now (two people, neither the owner)."""
    row = _decidable(session, lead, reset_id, now)
    if row.asked_by_id == lead.id:
        raise NotAllowed("The person who asked for a reset cannot approve it.")
    row.outcome, row.decided_by_id, row.decided_at = "approved", lead.id, ensure_utc(now)
    if not reset(session, row.user, now, actor=lead, via="web", client=client,
                 detail={"request": row.id, "asked_by": row.asked_by_id}):
        raise NotAllowed(f"{row.user.name} has no two-factor sign-in to reset any more.")
    return row


def decline_reset(session: Session, lead: User, reset_id: int, now: datetime, *, client: str | None = None
                  ) -> TwoFactorReset:
    row = _decidable(session, lead, reset_id, now)
    row.outcome, row.decided_by_id, row.decided_at = "declined", lead.id, ensure_utc(now)
    access_log.record(session, now, "two_factor_reset_declined", actor=lead, subject=row.user_id, client=client,
                      detail={"request": row.id})
    return row


# -- keys ------------------------------------------------------------------------------------------------


def rotate_secrets(session: Session, cipher: Cipher) -> int:
    """Re-encrypt TOTP secrets with the primary key (part of ``reprisals keys rotate``)."""
    changed = 0
    for cred in session.scalars(select(TwoFactorCredential)):
        if cipher.needs_rotation(cred.secret_ciphertext):
            cred.secret_ciphertext = cipher.rotate(cred.secret_ciphertext)
            changed += 1
    session.flush()
    return changed
