"""Reference data through the web: the admin's Bodies page, the CSV import of establishments, the
establishment form's address, and ``GET /api/establishments``."""

from __future__ import annotations

import html as html_lib
from io import BytesIO

import pytest
import sqlalchemy as sa

from reprisals.accounts import create_token
from reprisals.models import Establishment, User
from tests.web.conftest import Web, count_rows

# The pages and the API's contract, not the database: SQLite only (as the schemathesis test). The import
# itself runs on both databases in tests/reprisals/test_reference.py and tests/web/test_go_live.py.
pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def upload(web: Web, client: object, data: bytes, **fields: str) -> object:
    return web.post(client, "/admin/establishments/import",  # type: ignore[arg-type]
                    {"file": (BytesIO(data), "establishments.csv"), **fields}, content_type="multipart/form-data")


def test_an_import_with_bad_lines_lists_each_in_the_error_summary_and_imports_nothing(web: Web) -> None:
    admin = web.sign_in(web.world.admin)
    before = count_rows(web.database, ("establishments",))
    data = (b"name,type,nation,operator\n"
            b"HMP Fine,prison,england,HMPPS\n"
            b"HMP <b>Bad</b>,prison,Atlantis,HMPPS\n"
            b"hmp thornbury fen,prison,england,HMPPS\n")

    response = upload(web, admin, data)

    page = response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "govuk-error-summary" in page and "<title>Error: Import establishments from a CSV file" in page
    assert "There is a problem with the file (nothing was imported)" in page
    text = html_lib.unescape(page)
    assert "Line 3: 'Atlantis' is not a nation" in text
    assert ("Line 4: an establishment called hmp thornbury fen already exists (select “Update establishments that "
            "already exist” to change it)") in text
    assert "<b>Bad</b>" not in page  # the file's text is escaped
    assert count_rows(web.database, ("establishments",)) == before
    no_file = web.post(admin, "/admin/establishments/import", {}, content_type="multipart/form-data")
    assert no_file.status_code == 400 and 'href="#file">Select a CSV file' in no_file.get_data(as_text=True)


def test_a_good_import_adds_and_updates_then_says_how_many(web: Web) -> None:
    admin = web.sign_in(web.world.admin)
    data = ("\ufeffname,type,nation,operator,town,head_of_establishment_title\r\n"
            "HMP Thornbury Fen,Prison,England,HMPPS,Thornbury,Governor\r\n"
            "Ardmore Short-Term Holding Facility,Short-term holding facility,Scotland,Home Office,Ardmore,"
            "Duty Manager\r\n").encode()

    response = upload(web, admin, data, update="y")

    assert response.status_code == 302, response.get_data(as_text=True)  # type: ignore[attr-defined]
    listing = admin.get("/admin/establishments").get_data(as_text=True)  # type: ignore[attr-defined]
    assert "Establishments imported: 1 added, 1 updated, 0 unchanged." in listing
    assert "Short-term holding facility" in listing
    with web.database.session() as s:
        row = s.get(Establishment, web.world.establishment_id)
        assert row is not None and (row.town, row.head_of_establishment_title) == ("Thornbury", "Governor")


def test_the_establishment_form_saves_the_address_and_the_heads_title(web: Web) -> None:
    admin = web.sign_in(web.world.admin)
    path = f"/admin/establishments/{web.world.establishment_id}"

    saved = web.post(admin, path, {"name": "HMP Thornbury Fen", "type": "prison", "nation": "england",
                                   "operator": "HMPPS", "active": "y", "address_line_1": "Fen Road",
                                   "town": "Thornbury", "postcode": "TF1 2AB",
                                   "head_of_establishment_title": "Governor"})

    assert saved.status_code == 302, saved.get_data(as_text=True)
    form = admin.get(path).get_data(as_text=True)
    assert 'value="Fen Road"' in form and 'value="TF1 2AB"' in form and 'value="Governor"' in form
    long = web.post(admin, path, {"name": "HMP Thornbury Fen", "type": "prison", "nation": "england",
                                  "operator": "HMPPS", "postcode": "X" * 17})
    assert long.status_code == 400 and 'href="#postcode"' in long.get_data(as_text=True)


def test_an_admin_adds_a_body_and_a_bad_or_existing_code_is_refused(web: Web) -> None:
    admin = web.sign_in(web.world.admin)
    before = count_rows(web.database, ("bodies",))

    existing = web.post(admin, "/admin/bodies", {"code": "imb", "name": "Another"})
    bad = web.post(admin, "/admin/bodies", {"code": "1", "name": ""})

    assert existing.status_code == 400 and "A body with the code IMB already exists" in existing.get_data(as_text=True)
    bad_page = bad.get_data(as_text=True)
    assert bad.status_code == 400 and 'href="#code"' in bad_page and 'href="#name"' in bad_page
    assert count_rows(web.database, ("bodies",)) == before
    added = web.post(admin, "/admin/bodies", {"code": "npm", "name": "NPM Secretariat"})
    assert added.status_code == 302
    assert "NPM Secretariat (NPM) has been added" in admin.get("/admin/bodies").get_data(as_text=True)
    assert "NPM Secretariat (NPM)" in admin.get("/admin/users").get_data(as_text=True)  # the invite form's list


def test_the_api_lists_establishments_with_their_ids_to_any_role_and_only_with_a_token(web: Web) -> None:
    with web.database.session() as s:
        auditor = s.scalars(sa.select(User).where(User.email == web.world.auditor)).one()
        _, secret = create_token(s, auditor, "test", web.clock.now())
        s.execute(sa.update(Establishment).values(postcode="TF1 2AB"))
        s.commit()
    client = web.client()

    listed = client.get("/api/establishments", headers={"Authorization": f"Bearer {secret}"})
    anonymous = client.get("/api/establishments")

    assert listed.status_code == 200
    assert listed.get_json() == {"items": [{
        "id": web.world.establishment_id, "name": "HMP Thornbury Fen", "type": "prison", "nation": "england",
        "operator": "HMPPS", "active": True, "address_line_1": None, "address_line_2": None, "address_line_3": None,
        "town": None, "postcode": "TF1 2AB", "head_of_establishment_title": None}]}
    assert anonymous.status_code == 401 and anonymous.mimetype == "application/problem+json"
