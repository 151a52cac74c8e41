"""Protocol files that cannot break things: every hostile or malformed file is refused with a message
by ``reprisals protocol check`` (the real command) and by the admin upload page (the real app), never a
traceback or a 500, and nothing is stored."""

from __future__ import annotations

from html import unescape
from io import BytesIO
from pathlib import Path

import pytest

from tests.web.conftest import Cli, Web, assert_refused, count_rows, csrf_token

BUNDLED = (Path(__file__).resolve().parents[2] / "reprisals" / "protocols" / "sanctions-v1.yaml").read_text(
    encoding="utf-8")


def _variant(old: str, new: str) -> bytes:
    assert old in BUNDLED, f"the bundled spec no longer contains {old!r}"
    return BUNDLED.replace(old, new, 1).encode()


def _alias_bomb() -> bytes:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join([f'*{prev}'] * 9)}]")
    return ("\n".join(lines) + "\n").encode()


# (id, file content, what the one message says). The first four were 500s (or, for the duration, an
# accepted version that broke `refer` on every case of it) before the limits.
HOSTILE = [
    ("huge-version", _variant("version: 1\n", f"version: {2**63}\n"),
     "version: must be a whole number from 1 to 9999"),
    ("huge-duration", _variant("due: 10wd", "due: 99999999999wd"),
     "stages.referred.deadlines[0].due: '99999999999wd' is too long; a duration can be at most 260 working days"),
    ("deep-nesting", b"key: " + b"[" * 10_000 + b"]" * 10_000 + b"\n", "nested more than 20 levels deep"),
    ("oversize", BUNDLED.encode() + b"\n# " + b"x" * (256 * 1024) + b"\n",
     "the file is larger than 256 KiB; a protocol spec is a few KiB"),
    ("alias-bomb", _alias_bomb(), "more than 100,000 values once its aliases are expanded"),
    ("hours", _variant("due: 24h", "due: 100000h"), "a duration can be at most 8760 hours"),
    ("version-not-a-number", _variant("version: 1\n", "version: yes\n"),
     "version: must be a whole number from 1 to 9999"),
    ("not-utf8", "title: caf\u00e9\n".encode("latin-1"), "the file is not UTF-8 text"),
    ("not-yaml", b"key: [unclosed\n", "not valid YAML"),
    ("not-a-mapping", b"- a\n- b\n", "a spec must be a mapping"),
]


@pytest.mark.parametrize(("content", "expected"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_protocol_check_refuses_with_one_message_when_file_is_hostile(
        run_without_database: Cli, tmp_path: Path, content: bytes, expected: str) -> None:
    file = tmp_path / "hostile.yaml"
    file.write_bytes(content)

    result = run_without_database("protocol", "check", str(file))

    lines = assert_refused(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {file}: ") and expected in lines[0], lines


def test_admin_upload_refuses_each_hostile_file_with_its_message_and_stores_nothing(web: Web) -> None:
    admin = web.sign_in(web.world.admin)
    before = count_rows(web.database, ("protocol_versions",))
    token = csrf_token(admin.get("/admin/protocols").get_data(as_text=True))

    for name, content, expected in HOSTILE:
        r = admin.post("/admin/protocols", data={"csrf_token": token, "file": (BytesIO(content), f"{name}.yaml")},
                       content_type="multipart/form-data")
        html = unescape(r.get_data(as_text=True))
        assert r.status_code == 400, (name, r.status_code)
        assert "govuk-error-summary" in html, name
        assert expected[:1].upper() + expected[1:] in html or expected in html, (name, expected)
        assert "Traceback" not in html and "Error:" not in html.split("<title>")[1].split("</title>")[0][6:]

    pasted = admin.post("/admin/protocols", data={"csrf_token": token, "text": HOSTILE[3][1].decode()})
    assert pasted.status_code == 400
    assert "The file is larger than 256 KiB" in pasted.get_data(as_text=True)
    assert count_rows(web.database, ("protocol_versions",)) == before
    assert web.rt.engine.versions("sanctions") == [1, 2]
