"""The GOV.UK pagination component's parameters for a numbered list of pages (case list, access log)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def govuk_pagination(page: int, pages: int, href: Callable[[int], str], label: str) -> dict[str, Any] | None:
    """First, last and the pages either side of ``page``, with ellipses between gaps; None for one page."""
    if pages <= 1:
        return None
    items: list[dict[str, Any]] = []
    shown = sorted({1, pages, page - 1, page, page + 1} & set(range(1, pages + 1)))
    for i, n in enumerate(shown):
        if i and n - shown[i - 1] > 1:
            items.append({"ellipsis": True})
        items.append({"number": str(n), "href": href(n), "current": n == page})
    params: dict[str, Any] = {"items": items, "landmarkLabel": label}
    if page > 1:
        params["previous"] = {"href": href(page - 1)}
    if page < pages:
        params["next"] = {"href": href(page + 1)}
    return params
