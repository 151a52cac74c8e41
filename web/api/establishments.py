"""Establishments over the API: the ids a new case's ``establishment_id`` takes."""

from __future__ import annotations

from flask import Response

from reprisals import reference
from reprisals.models import Establishment
from web.api import bearer, bp
from web.api.cases import _json
from web.api.models import EstablishmentDetail, EstablishmentList
from web.api.spec import document
from web.context import db
from web.security import api_token


def _establishment(row: Establishment) -> EstablishmentDetail:
    return EstablishmentDetail(
        id=row.id, name=row.name, type=row.type, nation=row.nation, operator=row.operator, active=row.active,
        address_line_1=row.address_line_1, address_line_2=row.address_line_2, address_line_3=row.address_line_3,
        town=row.town, postcode=row.postcode, head_of_establishment_title=row.head_of_establishment_title)


@bp.get("/establishments")
@api_token
@bearer
@document(200, EstablishmentList, tag="establishments")
def list_establishments() -> Response:
    """Every establishment, by name, with its id (inactive ones too: open cases may be against them)."""
    return _json(EstablishmentList(items=[_establishment(r) for r in reference.list_establishments(db())]))
