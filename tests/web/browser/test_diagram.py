"""The protocol diagram on the protocol page, in a browser, one page load per width (decision 32): at 1280px
the drawing, unscaled, its text the size of the page's body text; at 375px the list of stages instead,
and the page does not scroll sideways. axe-core finds nothing at either width; both are photographed.
(The case page shows the same ``render_diagram``; its own browser tests cover that page.)"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Browser, expect

from tests.web.browser.conftest import Live, Pages


def _open(browser: Browser, live: Live, width: int) -> tuple[Any, Pages]:
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    return ctx, Pages(live, ctx.new_page(), f"diagram-{width}")


def test_the_drawing_at_full_width_and_the_list_on_a_phone(browser: Browser, live: Live) -> None:
    world = live.web.world
    for width in (1280, 375):
        ctx, p = _open(browser, live, width)
        try:
            p.sign_in(world.lead, check=False)
            page = p.go("/protocol")
            svg, listed = page.locator("svg.app-diagram"), page.locator("ol.app-diagram-list")
            if width == 1280:
                expect(svg).to_be_visible()
                expect(listed).to_be_hidden()
                measured = page.evaluate("""() => {
                    const svg = document.querySelector('svg.app-diagram');
                    const body = document.querySelector('main p.govuk-body');
                    const sizes = [...svg.querySelectorAll('text')].map(t => getComputedStyle(t).fontSize);
                    return {shown: svg.getBoundingClientRect().width, drawn: svg.viewBox.baseVal.width,
                            sizes: [...new Set(sizes)], body: getComputedStyle(body).fontSize};
                }""")
                assert measured["shown"] == measured["drawn"]  # never shrunk: its text is the size it says
                assert measured["sizes"] == [measured["body"]] == ["19px"]
            else:
                expect(listed).to_be_visible()
                expect(svg).to_be_hidden()
                expect(listed.locator("li.app-diagram-list__stage")).to_have_count(8)
                triage = listed.locator("li.app-diagram-list__stage[data-stage=triage]")
                expect(triage).to_contain_text("Triage decision: 2 working days (4 hours if the risk is urgent)")
                expect(triage).to_contain_text("Refer to the establishment (to Referred)")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            p.check(f"protocol-{width}")
        finally:
            ctx.close()
