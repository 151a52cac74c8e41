"""Letters sent and responses received (reprisals.letters.letters_of), on the three surfaces: the case
page's "Letters and responses" table, `reprisals case show` (and --json), and the API's case detail."""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from reprisals.letters import TYPED_HIDDEN
from tests.factories import CONSENT, REFER
from tests.web.conftest import Cli, Web, World
from tests.web.test_api import Api
from tests.web.test_case_actions import CANARIES, Pages, d

LONDON = ZoneInfo("Europe/London")


def rows(html: str) -> list[list[str]]:
    """The letters table's rows as the text of their cells."""
    section = html[html.index('id="letters"'):html.index('id="protocol"')]
    body = section[section.index("<tbody"):section.index("</tbody>")]
    out = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        out.append([re.sub(r"\s+", " ", re.sub(r"<br>", "; ", c)).strip() for c in cells])
    return out


def test_the_case_page_lists_letters_and_responses(web: Web) -> None:
    ref = web.world.reported
    lead = Pages(web, web.world.lead, ref)
    page = lead.client.get(f"/cases/{ref}").get_data(as_text=True)
    assert "No letters have been sent on this case yet." in page
    lead.act("record_consent_and_risk", {"consent": "full", "risk": "standard", "occurred_on": d("2025-04-17"),
                                         "occurred_time": "09:00"})
    page = lead.act("refer", {"recipients": ["head_of_establishment"], "occurred_on": d("2025-04-17")})
    # PROTOCOL.md's worked example: the response to a letter of Thu 17 April 2025 is due Tue 6 May.
    assert rows(page) == [["Referral", "Head of establishment", "Sent Thu 17 April 2025", "Tue 6 May 2025",
                           "Not yet"]]
    form = lead.form("escalate")
    typed = "Governor's <b>office</b>"
    fields = ({"recipient": "other", "recipient_other": typed} if 'name="recipient_other"' in form
              else {"recipient": typed})  # a later version's choice, or version 1's text
    page = lead.act("escalate", {"reason": "overdue", **fields, "occurred_on": d("2025-05-07")})
    assert "Governor" not in page and TYPED_HIDDEN in page  # typed by hand: withheld until a reason is given
    lead.act("record_response", {"responder": "establishment", "summary": "Job restored.",
                                 "occurred_on": d("2025-05-09")})
    web.post(lead.client, f"/cases/{ref}/identity", {"reason": "Checking the letters"})
    page = lead.client.get(f"/cases/{ref}").get_data(as_text=True)
    assert "Governor&#39;s &lt;b&gt;office&lt;/b&gt;" in page and "<b>office</b>" not in page
    assert rows(page) == [
        ["Referral", "Head of establishment", "Sent Thu 17 April 2025", "Tue 6 May 2025", "Fri 9 May 2025"],
        # 10 working days from Wed 7 May 2025.
        ["Escalation (level 1)", "Governor&#39;s &lt;b&gt;office&lt;/b&gt;", "Sent Wed 7 May 2025",
         "Wed 21 May 2025", "Fri 9 May 2025"],
        ["Response", "From the establishment", "Received Fri 9 May 2025",
         '<span class="govuk-visually-hidden">Not applicable</span>',
         '<span class="govuk-visually-hidden">Not applicable</span>'],
    ]
    # The auditor reads the same list, without the recipient typed by hand (no identity in it).
    auditor = web.sign_in(web.world.auditor).get(f"/cases/{ref}").get_data(as_text=True)
    assert [[TYPED_HIDDEN if "Governor" in cell else cell for cell in row] for row in rows(page)] == rows(auditor)
    for canary in CANARIES:
        assert canary not in auditor


def test_case_show_prints_the_letters_and_gives_them_in_json(run: Cli, world: World) -> None:
    ref, lead = world.reported, world.lead
    for args in (["record_consent_and_risk", "-f", "consent=full", "-f", "risk=standard",
                  "--occurred-at", "2025-04-17T09:00"],
                 ["refer", "-f", "recipients=head_of_establishment", "--occurred-at", "2025-04-17T10:00"]):
        done = run("case", "advance", ref, *args, "--as", lead)
        assert done.exit_code == 0, done.output
    shown = run("case", "show", ref, "--as", lead)
    assert shown.exit_code == 0, shown.output
    assert ("    Referral to Head of establishment — sent Thu 17 April 2025; response due Tue 6 May 2025; "
            "response received: not yet") in shown.stdout.splitlines()
    done = run("case", "advance", ref, "record_response", "-f", "responder=establishment", "-f",
               "summary=Job restored.", "--occurred-at", "2025-05-02", "--as", lead)
    assert done.exit_code == 0, done.output
    shown = run("case", "show", ref, "--as", lead)
    lines = shown.stdout.splitlines()
    assert lines[lines.index("  letters and responses:") + 1:][:2] == [
        "    Referral to Head of establishment — sent Thu 17 April 2025; response due Tue 6 May 2025; "
        "response received: Fri 2 May 2025",
        "    Response from the establishment — received Fri 2 May 2025"]
    out = json.loads(run("case", "show", ref, "--as", lead, "--json").stdout)
    referral, response = out["letters"]
    assert {k: referral[k] for k in ("kind", "level", "recipients", "on", "response_received", "responder")} == {
        "kind": "referral", "level": 0, "recipients": ["head_of_establishment"], "on": "2025-04-17",
        "response_received": "2025-05-02", "responder": None}
    assert datetime.fromisoformat(referral["response_due"]).astimezone(LONDON) == datetime(2025, 5, 6, 17, 0,
                                                                                           tzinfo=LONDON)
    assert (response["kind"], response["on"], response["responder"], response["response_due"]) == (
        "response", "2025-05-02", "establishment", None)
    triaged = run("case", "show", world.triaged, "--as", lead)
    assert "  letters and responses: none" in triaged.stdout.splitlines()


def test_the_api_case_detail_has_the_letters(web: Web) -> None:
    w = web.world
    lead = Api(web, w.lead)
    version = lead.get(f"/api/cases/{w.reported}").get_json()["version"]
    body = lead.post(f"/api/cases/{w.reported}/actions/record_consent_and_risk",
                     {"expected_version": version, "fields": CONSENT, "occurred_at": "2025-04-17T09:00"}).get_json()
    assert body["letters"] == []
    body = lead.post(f"/api/cases/{w.reported}/actions/refer",
                     {"expected_version": body["version"], "fields": REFER, "occurred_at": "2025-04-17T10:00"}
                     ).get_json()
    (letter,) = body["letters"]
    assert datetime.fromisoformat(letter.pop("response_due")).astimezone(LONDON) == datetime(2025, 5, 6, 17, 0,
                                                                                             tzinfo=LONDON)
    assert letter == {"kind": "referral", "level": 0, "recipients": ["head_of_establishment"], "on": "2025-04-17",
                      "response_received": None, "responder": None, "history_seq": body["history"][-1]["seq"]}
    body = lead.post(f"/api/cases/{w.reported}/actions/record_response", {
        "expected_version": body["version"], "occurred_at": "2025-05-02",
        "fields": {"responder": "establishment", "summary": "Job restored."}}).get_json()
    referral, response = lead.get(f"/api/cases/{w.reported}").get_json()["letters"]
    assert referral["response_received"] == "2025-05-02"
    assert response == {"kind": "response", "level": 0, "recipients": [], "on": "2025-05-02", "response_due": None,
                        "response_received": None, "responder": "establishment",
                        "history_seq": body["history"][-1]["seq"]}
