"""The protocol diagram: every stage and move drawn, the current stage highlighted, accessible,
deterministic, no inline styles; served inline on the case page and on its own. Legible (decision 32):
every text horizontal at the page's body size, no two lines crossing, no text on a line or on another
text, each stage's deadlines beside it; the same protocol as a list for narrow screens."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reprisals.protocol import build_engine, bundled_specs
from reprisals.vocabulary import deadline_words
from tests.factories import cipher
from tests.web.conftest import Web
from web.diagram import BODY, CURRENT_FILL, VISITED_FILL, render_diagram, render_list, render_svg, text_width
from workflow.spec import WorkflowSpec, load_spec

NS = {"svg": "http://www.w3.org/2000/svg"}


def _spec() -> WorkflowSpec:
    return build_engine(cipher=cipher()).spec("sanctions")


def _nodes(root: ET.Element) -> dict[str, ET.Element]:
    return {g.attrib["data-stage"]: g for g in root.iter("{http://www.w3.org/2000/svg}g") if "data-stage" in g.attrib}


def test_every_stage_appears_in_order_and_the_current_one_is_highlighted() -> None:
    spec = _spec()
    svg = render_svg(spec, "referred", {"reported", "triage", "referred"})
    root = ET.fromstring(svg)  # well-formed XML
    nodes = _nodes(root)
    assert list(nodes) == list(spec.stages)  # every stage, in protocol order
    ys = [float(g.find("svg:rect", NS).attrib["y"]) for g in nodes.values()]  # type: ignore[union-attr]
    assert ys == sorted(ys)
    current = nodes["referred"]
    assert "app-diagram__node--current" in current.attrib["class"]
    assert current.find("svg:rect", NS).attrib["fill"] == CURRENT_FILL  # type: ignore[union-attr]
    assert "Current stage" in "".join(current.itertext())  # not by colour alone
    for visited in ("reported", "triage"):
        assert "app-diagram__node--visited" in nodes[visited].attrib["class"]
        assert nodes[visited].find("svg:rect", NS).attrib["fill"] == VISITED_FILL  # type: ignore[union-attr]
    for other in ("assessment", "closed"):
        assert "--current" not in nodes[other].attrib["class"] and "--visited" not in nodes[other].attrib["class"]
    text = " ".join(t.strip() for t in root.itertext())  # labels wrap over several lines of text
    for trig in spec.triggers.values():  # every move labelled with its trigger (those that stay are no move)
        assert trig.stays or trig.label in text, trig.label


def test_it_is_accessible_and_has_no_inline_style() -> None:
    svg = render_svg(_spec(), "triage", ())
    root = ET.fromstring(svg)
    assert root.attrib["role"] == "img"
    title = root.find("svg:title", NS)
    desc = root.find("svg:desc", NS)
    assert title is not None and "Triage" in (title.text or "")
    assert desc is not None and "The case is at stage Triage" in (desc.text or "")
    assert root.attrib["aria-labelledby"] == f"{title.attrib['id']} {desc.attrib['id']}"
    assert "style=" not in svg and "<style" not in svg and "<script" not in svg


def test_the_layout_is_deterministic_and_escapes_spec_text() -> None:
    spec = _spec()
    assert render_svg(spec, "assessment", ["triage"]) == render_svg(spec, "assessment", ["triage"])
    odd = load_spec("""
key: odd
version: 1
title: "A <b>bold</b> & risky title"
initial: start
roles: [lead]
stages:
  start: {label: "Start <script>"}
  middle: {}
  done: {final: true}
triggers:
  go: {from: start, to: middle, roles: [lead], label: "Go & see"}
  back: {from: middle, to: start, roles: [lead]}
  end: {from: middle, to: done, roles: [lead]}
""")
    svg = render_svg(odd, "middle", ["start"])
    ET.fromstring(svg)
    assert "<script>" not in svg and "<b>" not in svg and "Go &amp; see" in svg
    assert set(_nodes(ET.fromstring(svg))) == {"start", "middle", "done"}


def test_the_case_page_shows_the_diagram_inline_and_as_a_file(web: Web) -> None:
    ref = web.world.triaged
    client = web.sign_in(web.world.lead)
    html = client.get(f"/cases/{ref}").get_data(as_text=True)
    inline = re.search(r"<svg .*?</svg>", html, re.S)
    assert inline is not None
    nodes = _nodes(ET.fromstring(inline.group(0)))
    assert "app-diagram__node--current" in nodes["triage"].attrib["class"]
    assert "app-diagram__node--visited" in nodes["reported"].attrib["class"]
    response = client.get(f"/cases/{ref}/diagram.svg")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert "style=" not in response.get_data(as_text=True)
    assert web.sign_in(web.world.outside_lead).get(f"/cases/{ref}/diagram.svg").status_code == 404


# -- legible at every size (decision 32) ----------------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"
STATIC = Path(__file__).resolve().parents[2] / "web" / "static"
VERSIONS = {spec.version: spec for spec in bundled_specs()}
Segment = tuple[tuple[float, float], tuple[float, float]]


def _segments(element: ET.Element) -> list[Segment]:
    """The straight pieces of an edge: a <line>, or a <path> of M/H/V commands (all the diagram draws)."""
    a = element.attrib
    if element.tag == SVG + "line":
        return [((float(a["x1"]), float(a["y1"])), (float(a["x2"]), float(a["y2"])))]
    words, points, x, y, i = a["d"].split(), [], 0.0, 0.0, 0
    while i < len(words):
        command = words[i]
        if command == "M":
            x, y, i = float(words[i + 1]), float(words[i + 2]), i + 3
        elif command == "H":
            x, i = float(words[i + 1]), i + 2
        elif command == "V":
            y, i = float(words[i + 1]), i + 2
        else:
            raise AssertionError(f"unexpected path command {command!r} in {a['d']}")
        points.append((x, y))
    return list(itertools.pairwise(points))


def _touch(s: Segment, t: Segment) -> bool:
    """Whether two segments share any point. Both are horizontal or vertical, so their bounding boxes
    meeting is their meeting (this also counts one running along the other)."""
    (a, b), (c, d) = s, t
    return (min(a[0], b[0]) <= max(c[0], d[0]) and min(c[0], d[0]) <= max(a[0], b[0])
            and min(a[1], b[1]) <= max(c[1], d[1]) and min(c[1], d[1]) <= max(a[1], b[1]))


def test_segments_that_cross_or_touch_are_found() -> None:  # the check below can fail
    assert _touch(((0, 5), (10, 5)), ((5, 0), (5, 10)))
    assert _touch(((0, 5), (10, 5)), ((10, 5), (10, 9)))
    assert not _touch(((0, 5), (10, 5)), ((11, 0), (11, 10)))
    assert not _touch(((0, 5), (10, 5)), ((0, 6), (10, 6)))


def _text_boxes(root: ET.Element) -> list[tuple[float, float, float, float, str]]:
    boxes = []
    for t in root.iter(SVG + "text"):
        x, y, w = float(t.attrib["x"]), float(t.attrib["y"]), text_width(t.text or "",
                                                                     bold=t.attrib.get("font-weight") == "700")
        left = {"start": x, "middle": x - w / 2, "end": x - w}[t.attrib["text-anchor"]]
        boxes.append((left, left + w, y - 0.75 * BODY, y + 0.2 * BODY, t.text or ""))
    return boxes


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_no_two_edges_cross_and_no_text_sits_on_a_line_or_on_another_text(version: int) -> None:
    spec = VERSIONS[version]
    root = ET.fromstring(render_svg(spec, "triage", ["reported"]))
    edges = [_segments(e) for e in root.iter() if "app-diagram__edge" in e.attrib.get("class", "")]
    moves = {(t.sources, t.dest) for t in spec.triggers.values() if not t.stays}
    assert len(edges) >= len(spec.stages) - 1 and moves  # every edge was read
    crossing = [(i, j) for i, j in itertools.combinations(range(len(edges)), 2)
                if any(_touch(s, t) for s in edges[i] for t in edges[j])]
    assert crossing == []
    texts = _text_boxes(root)
    assert len(texts) > len(spec.stages)
    for a, b in itertools.combinations(texts, 2):
        assert not (a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]), (a[4], b[4])
    for box in texts:
        for edge in edges:
            for (p, q) in edge:
                assert not (box[0] < max(p[0], q[0]) and min(p[0], q[0]) < box[1]
                            and box[2] < max(p[1], q[1]) and min(p[1], q[1]) < box[3]), (box[4], p, q)
    assert max(b[1] for b in texts) <= float(root.attrib["width"])  # nothing cut off on the right
    assert float(root.attrib["width"]) <= 930  # fits the page's 960px column at the width it is shown


def test_every_text_is_horizontal_at_the_pages_body_size() -> None:
    svg = render_svg(VERSIONS[2], "referred", ["reported", "triage"])
    root = ET.fromstring(svg)
    sizes = {t.attrib["font-size"] for t in root.iter(SVG + "text")}
    assert sizes == {str(BODY)}
    assert "transform" not in svg and "rotate" not in svg  # no rotated text
    # The page's body text (GOV.UK Frontend's .govuk-body) is the same size, and nothing restyles ours.
    govuk = (STATIC / "govuk" / "govuk-frontend.min.css").read_text()
    body = re.search(r"\.govuk-body,\.govuk-body-m\{font-weight:400;font-size:([\d.]+)rem", govuk)
    assert body is not None and float(body.group(1)) * 16 == BODY
    ours = (STATIC / "app.css").read_text()
    assert not re.search(r"\.app-diagram[^{]*\{[^}]*font-size", ours)
    # Drawn at its natural size: the view box is the size it is shown at, never shrunk by the page.
    assert root.attrib["viewBox"] == f"0 0 {root.attrib['width']} {root.attrib['height']}"
    assert not re.search(r"\.app-diagram[^{-]*\{[^}]*(max-width|width)", ours)


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_every_stages_deadlines_are_beside_it_in_the_drawing_and_in_the_list(version: int) -> None:
    spec = VERSIONS[version]
    root = ET.fromstring(render_svg(spec, None))
    text = " ".join(t.strip() for t in root.itertext())
    html = render_list(spec, "escalated", ["reported", "triage", "referred"])
    items = [re.match(r'"([^"]+)">(.*)', part, re.S) for part in html.split('<li class="app-diagram-list__stage" '
                                                                           'data-stage=')[1:]]
    by_stage = {m.group(1): m.group(2) for m in items if m}
    assert list(by_stage) == list(spec.stages)  # an ordered list of the stages, in order
    boxes = {g.attrib["data-stage"]: float(g.find(f"{SVG}rect").attrib["y"])  # type: ignore[union-attr]
             for g in root.iter(SVG + "g")}
    for name, stage in spec.stages.items():
        for deadline in stage.deadlines:
            words = deadline_words(deadline)
            assert words in text, words
            assert f"<li>{words}</li>" in by_stage[name], (name, words)
            # beside its own stage: below the top of its box, above the next stage's
            first = next(t for t in root.iter(SVG + "text") if words.startswith(t.text or "\0")
                         and "app-diagram__deadline" in t.attrib["class"])
            below = [y for y in boxes.values() if y > boxes[name]]
            assert boxes[name] < float(first.attrib["y"]) < min(below, default=1e9), (name, words)
        for trig in spec.triggers_from(name):  # the actions out of each stage (any open stage: once, below)
            if set(trig.sources) != set(spec.open_stages):
                assert trig.label in by_stage[name], (name, trig.label)
    assert "Current stage" in by_stage["escalated"] and "Visited" in by_stage["triage"]
    assert "From any open stage: The person withdraws, The person has left custody (to Closed)." in html
    both = str(render_diagram(spec, "escalated", ["triage"]))
    assert both.startswith("<svg") and '<ol class="govuk-list govuk-list--number app-diagram-list">' in both


def test_words_for_a_protocols_deadlines() -> None:
    triage = VERSIONS[2].stages["triage"].deadlines[0]
    assert deadline_words(triage) == "Triage decision: 2 working days (4 hours if the risk is urgent)"
    reported = VERSIONS[2].stages["reported"].deadlines[0]
    assert deadline_words(reported) == ("Consent and risk recorded: 1 working day (the same working day if the "
                                        "risk is urgent)")
    referred = [deadline_words(d) for d in VERSIONS[2].stages["referred"].deadlines]
    assert referred[0] == "Establishment response: 10 working days (only if the risk is high or standard)"
    level_1 = VERSIONS[2].stages["escalated"].deadlines[0]
    assert deadline_words(level_1) == ("Central authority response: 10 working days (5 working days if the risk is "
                                       "urgent; only if the escalation level is 1)")


def test_the_protocol_page_shows_the_active_protocol_as_drawing_and_list(web: Web) -> None:
    client = web.sign_in(web.world.staff)  # anyone signed in
    html = client.get("/protocol").get_data(as_text=True)
    spec = build_engine(cipher=cipher()).spec("sanctions")
    assert "<h1 class=\"govuk-heading-xl\">The protocol</h1>" in html and f"version {spec.version}" in html
    root = ET.fromstring(re.search(r"<svg .*?</svg>", html, re.S).group(0))  # type: ignore[union-attr]
    assert root.find(f"{SVG}title").text == spec.title  # type: ignore[union-attr]  # no case, no current stage
    assert "--current" not in html
    assert html.count('class="app-diagram-list__stage"') == len(spec.stages)
    assert web.client().get("/protocol").status_code == 302  # signed out: to the sign-in page
