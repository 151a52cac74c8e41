"""API tokens over the API: list yours, revoke yours (admins: anyone's). A token cannot make tokens:
they are made from a browser session that gave its second factor, or by the operator (``reprisals
tokens add``); there is deliberately no POST here (tests/web/test_two_factor.py keeps it so)."""

from __future__ import annotations

from flask import Response, request

from reprisals.accounts import ApiToken, revoke_token
from reprisals.errors import NotAllowed
from reprisals.models import Role
from reprisals.readside.lookups import api_tokens_of
from web.api import ApiProblem, api_user, bearer, bp
from web.api.cases import _json
from web.api.models import TokenList, TokenOut
from web.api.spec import document
from web.context import db, now
from web.security import api_token


def _token(row: ApiToken) -> TokenOut:
    return TokenOut(id=row.id, name=row.name, user_id=row.user_id, created_at=row.created_at,
                    last_used_at=row.last_used_at, revoked_at=row.revoked_at)


@bp.get("/tokens")
@api_token
@bearer
@document(200, TokenList, tag="tokens")
def list_tokens() -> Response:
    """Your API tokens, newest first (never their secrets)."""
    rows = api_tokens_of(db(), api_user().id)
    return _json(TokenList(items=[_token(r) for r in rows]))


@bp.delete("/tokens/<int(min=1, max=2147483647):token_id>")
@api_token
@bearer
@document(200, TokenOut, 404, tag="tokens", path_parameters={"token_id": "The token's id."})
def delete_token(token_id: int) -> Response:
    """Revoke one of your tokens (an admin may revoke anyone's). Revoking twice is harmless."""
    user = api_user()
    try:
        row = revoke_token(db(), token_id, user, now(), via="api", client=request.remote_addr)
    except NotAllowed:
        raise ApiProblem(404, "Not found", "You have no such token.") from None
    db().commit()
    assert row.user_id == user.id or user.role is Role.ADMIN
    return _json(_token(row))
