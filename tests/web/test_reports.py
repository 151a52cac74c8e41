"""Figures for annual reports through the web: tables and bar charts of the world's two IMB cases
(received 16 April 2025), exact or suppressed for publication, the CSV, who may see which body, and a
bad period refused the GOV.UK way."""

from __future__ import annotations

import re

from tests.factories import CANARY_DESCRIPTION, CANARY_NAME, CANARY_NUMBER
from tests.web.conftest import Web


def chart(html: str, key: str) -> str:
    """The SVG of table ``key``."""
    match = re.search(rf'<h2 class="govuk-heading-m" id="{key}">.*?(<svg.*?</svg>)', html, flags=re.S)
    assert match is not None, key
    return match[1]


def no_identity(*texts: str) -> None:
    for text in texts:
        for secret in (CANARY_NAME, CANARY_NUMBER, CANARY_DESCRIPTION, "Zebediah"):
            assert secret not in text


def test_an_auditor_sees_exact_figures_as_tables_and_charts(web: Web) -> None:
    client = web.sign_in(web.world.auditor)
    response = client.get("/reports/?period=2025&body=all&counts=exact")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "1 January to 31 December 2025: all bodies" in html and "Exact counts: not for publication" in html
    assert re.search(r'<span class="app-count">2</span> cases received', html)
    risk = chart(html, "risk")
    assert 'role="img"' in risk and "<title" in risk and "Standard: 2" in risk and risk.count("<rect") == 1
    assert re.search(r'Standard</th>\s*<td class="govuk-table__cell govuk-table__cell--numeric">2</td>', html)
    sanctions = chart(html, "sanction_types")
    assert "Loss of job or activity: 2" in sanctions
    assert 'href="/reports/figures.csv?period=2025&amp;body=all&amp;counts=exact"' in html
    assert "<style" not in html.split("<main", 1)[1] and " style=" not in html  # the CSP forbids them
    no_identity(html)


def test_counts_under_five_are_suppressed_for_publication_and_have_no_bar(web: Web) -> None:
    client = web.sign_in(web.world.auditor)
    html = client.get("/reports/?period=2025&counts=publish").get_data(as_text=True)
    assert "For publication" in html and "Exact counts" not in html
    assert re.search(r'<span class="app-count">fewer than 5</span> cases received', html)
    risk = chart(html, "risk")
    # 2 of 2 cases: with the total published, hiding the 2 alone would hide nothing: the table is withheld.
    assert "Urgent: suppressed; High: suppressed; Standard: suppressed" in risk and "Standard: 2" not in risk
    assert "<rect" not in risk  # a bar's length would tell what the words hide
    sanctions = chart(html, "sanction_types")  # no total (several per case): only the small count hidden
    assert "Loss of job or activity: fewer than 5" in sanctions and "Transfer: 0" in sanctions
    assert not re.search(r"numeric\">[1-4]</td>", html)


def test_the_csv_holds_the_same_figures_and_says_whether_it_may_be_published(web: Web) -> None:
    client = web.sign_in(web.world.auditor)
    exact = client.get("/reports/figures.csv?period=2025-26&body=IMB&counts=exact")
    assert exact.status_code == 200 and exact.mimetype == "text/csv"
    assert exact.headers["Content-Disposition"] == (
        'attachment; filename="reprisals-figures-2025-04-01-to-2026-03-31-imb-exact-not-for-publication.csv"')
    text = exact.get_data(as_text=True)
    assert "Cases,Received in the period,2" in text and "Risk to the person,Standard,2" in text
    assert "NOT FOR PUBLICATION" in text
    published = client.get("/reports/figures.csv?period=2025-26&body=IMB&counts=publish").get_data(as_text=True)
    assert "Cases,Received in the period,fewer than 5" in published and ",2\n" not in published
    no_identity(text, published)


def test_a_lead_sees_only_their_own_bodys_figures_whatever_they_ask(web: Web) -> None:
    imb = web.sign_in(web.world.lead).get("/reports/?period=2025&body=PPO").get_data(as_text=True)
    assert "all bodies" not in imb and "Independent Monitoring Boards" in imb
    assert re.search(r'<span class="app-count">2</span> cases received', imb)
    assert 'value="PPO"' not in imb and 'value="all"' not in imb
    ppo = web.sign_in(web.world.outside_lead).get("/reports/?period=2025&body=IMB").get_data(as_text=True)
    assert re.search(r'<span class="app-count">0</span> cases received', ppo)
    csv_text = web.sign_in(web.world.outside_lead).get("/reports/figures.csv?period=2025&body=IMB")
    assert "Cases,Received in the period,0" in csv_text.get_data(as_text=True)


def test_staff_and_admins_may_not_see_figures(web: Web) -> None:
    for email in (web.world.staff, web.world.admin):
        client = web.sign_in(email)
        assert client.get("/reports/?period=2025").status_code == 403
        assert client.get("/reports/figures.csv?period=2025").status_code == 403
    assert "Figures" not in web.sign_in(web.world.staff).get("/").get_data(as_text=True).split("<main", 1)[0]
    assert 'href="/reports/"' in web.sign_in(web.world.auditor).get("/").get_data(as_text=True)


def test_a_bad_period_is_refused_with_the_error_summary_and_no_figures(web: Web) -> None:
    client = web.sign_in(web.world.auditor)
    for period, message in [("last year", "The period must be a year (2025), a financial year (2025-26)"),
                            ("2025-27", "The period: a financial year is written like 2025-26"),
                            ("2025-05-01..2025-04-01", "The period ends before it starts")]:
        response = client.get(f"/reports/?period={period}")
        html = response.get_data(as_text=True)
        assert response.status_code == 400, period
        assert "govuk-error-summary" in html and 'href="#period"' in html and "<title>Error:" in html
        assert message.replace("The period: ", "The period ") in html, (period, html[html.find("error-summary"):][:800])
        assert "cases received" not in html
    assert client.get("/reports/figures.csv?period=nonsense").status_code == 400


def test_the_period_defaults_to_the_current_financial_year(web: Web) -> None:
    today = web.clock.now().date()
    start = today.year if today.month >= 4 else today.year - 1
    html = web.sign_in(web.world.auditor).get("/reports/").get_data(as_text=True)
    assert f"1 April {start} to 31 March {start + 1}: all bodies" in html
    assert f'value="{start}-{(start + 1) % 100:02d}"' in html
