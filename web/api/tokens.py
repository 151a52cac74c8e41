"""API tokens over the API: list yours, create one for yourself (the secret is shown once), revoke
yours (admins: anyone's)."""

from __future__ import annotations

from flask import Response, url_for
from sqlalchemy import select

from reprisals.accounts import ApiToken, create_token, revoke_token
from reprisals.errors import NotAllowed
from reprisals.models import Role
from web.api import ApiProblem, api_user, bearer, bp, json_body
from web.api.cases import _json
from web.api.models import NewToken, TokenCreated, TokenList, TokenOut
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
    rows = db().scalars(select(ApiToken).where(ApiToken.user_id == api_user().id)
                        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc()))
    return _json(TokenList(items=[_token(r) for r in rows]))


@bp.post("/tokens")
@api_token
@bearer
@document(201, TokenCreated, 400, 415, json=NewToken, tag="tokens")
def new_token() -> Response:
    """Create a token for yourself. The secret is in this response only."""
    body = json_body(NewToken)
    row, secret = create_token(db(), api_user(), body.name, now())
    db().commit()
    created = TokenCreated(**_token(row).model_dump(), secret=secret)
    return _json(created, 201, {"Location": url_for("api.list_tokens")})


@bp.delete("/tokens/<int(min=1, max=2147483647):token_id>")
@api_token
@bearer
@document(200, TokenOut, 404, tag="tokens", path_parameters={"token_id": "The token's id."})
def delete_token(token_id: int) -> Response:
    """Revoke one of your tokens (an admin may revoke anyone's). Revoking twice is harmless."""
    user = api_user()
    try:
        row = revoke_token(db(), token_id, user, now())
    except NotAllowed:
        raise ApiProblem(404, "Not found", "You have no such token.") from None
    db().commit()
    assert row.user_id == user.id or user.role is Role.ADMIN
    return _json(_token(row))
