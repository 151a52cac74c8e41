"""The notifications inbox: unread items highlighted, mark one or all read, the header count follows."""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa

from notifications.models import InboxItem
from reprisals.models import User
from tests.web.conftest import Web, csrf_token


def _items(web: Web, email: str, n: int) -> list[int]:
    with web.database.session() as s:
        user = s.scalars(sa.select(User).where(User.email == email)).one()
        rows = [InboxItem(message_key=f"k{user.id}-{i}", recipient=str(user.id), template="reminder",
                          subject=f"Reminder {i}: RPR-2025-0001", body=f"Body {i}", link="https://x.test/cases/A",
                          created_at=web.clock.now() - timedelta(minutes=i)) for i in range(n)]
        s.add_all(rows)
        s.commit()
        return [r.id for r in rows]


def _header_count(html: str) -> int:
    found = re.search(r'govuk-tag--red">(\d+)<span class="govuk-visually-hidden"> unread', html)
    return int(found.group(1)) if found else 0


def test_mark_one_then_all_read(web: Web) -> None:
    ids = _items(web, web.world.staff, 3)
    other = _items(web, web.world.lead, 1)
    client = web.sign_in(web.world.staff)
    page = client.get("/inbox/").get_data(as_text=True)
    assert _header_count(page) == 3 and page.count("app-inbox__item--unread") == 3
    assert "Reminder 0" in page and "Body 2" in page
    r = client.post(f"/inbox/{ids[1]}/read", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 302
    page = client.get("/inbox/").get_data(as_text=True)
    assert _header_count(page) == 2 and page.count("app-inbox__item--unread") == 2
    # someone else's item: 404 and unchanged
    assert client.post(f"/inbox/{other[0]}/read", data={"csrf_token": csrf_token(page)}).status_code == 404
    # without a CSRF token: refused, nothing changes
    assert client.post(f"/inbox/{ids[0]}/read").status_code == 400
    assert _header_count(client.get("/inbox/").get_data(as_text=True)) == 2
    client.post("/inbox/read-all", data={"csrf_token": csrf_token(page)})
    page = client.get("/inbox/").get_data(as_text=True)
    assert _header_count(page) == 0 and "app-inbox__item--unread" not in page
    lead = web.sign_in(web.world.lead).get("/inbox/").get_data(as_text=True)
    assert _header_count(lead) == 1  # the lead's own item is untouched


def test_empty_inbox(web: Web) -> None:
    page = web.sign_in(web.world.auditor).get("/inbox/").get_data(as_text=True)
    assert "You have no notifications." in page
