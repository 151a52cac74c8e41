"""The protocol diagram: every stage and move drawn, the current stage highlighted, accessible,
deterministic, no inline styles; served inline on the case page and on its own."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from reprisals.protocol import build_engine
from tests.factories import cipher
from tests.web.conftest import Web
from web.diagram import CURRENT_FILL, VISITED_FILL, render_svg
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
    text = "".join(root.itertext())
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
