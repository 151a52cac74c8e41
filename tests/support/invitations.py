"""What an invitee finds in their e-mail: the invitation link, read from the outbox rows as the e-mail
renders them (the admin's pages never show it), or from a message received by the SMTP server."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifications.models import OutboxMessage
from reprisals.messaging import message_templates

LINK = re.compile(r"https?://[^\s\"<>]+/invitation/([A-Za-z0-9_-]+)")
TEMPLATES = message_templates()


def invitation_emails(session: Session, email: str) -> list[OutboxMessage]:
    """The invitation messages queued for ``email``, oldest first."""
    return list(session.scalars(select(OutboxMessage).where(OutboxMessage.template == "invitation",
                                                            OutboxMessage.recipient == email)
                                .order_by(OutboxMessage.id)))


def invitation_token(session: Session, email: str) -> str:
    """The token of the latest invitation e-mailed to ``email``, from the e-mail's rendered text."""
    messages = invitation_emails(session, email)
    assert messages, f"no invitation e-mailed to {email}"
    text = TEMPLATES.render("invitation", messages[-1].context).text
    found = LINK.search(text)
    assert found, text
    return found.group(1)


def token_in(text: str) -> str | None:
    found = LINK.search(text)
    return found.group(1) if found else None
