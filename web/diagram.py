"""The protocol diagram: an SVG drawn in pure Python from the workflow spec, and the same protocol as a
list for narrow screens (decision 32).

Every text is horizontal at the page's body size (``BODY``, GOV.UK's 19px), never scaled: the SVG is
drawn at its natural size and shown only where it fits; below that the page shows the list (an
ordered list of the stages, each with its deadlines and the actions out of it).

Layout (layered, top to bottom, stages in protocol order), chosen so that no two lines cross where
that can be avoided:

* each stage is a box in one column; a move to the next stage is an arrow straight down, labelled
  to its left in the gap between the boxes;
* every other move (back, forward past the next stage, staying) runs in a lane beside the column:
  out of its stage's side, along its lane, into its destination's side. Lanes are nested (shorter
  spans nearer the column) and their ends ordered on each box, so lanes on one side never cross;
  two moves whose spans interleave would have to cross on one side, so one of them goes to the
  other side. Left-lane labels stand in the gap next to the box they leave, between the lanes and
  the column; right-lane labels beyond the right lanes;
* the stage's deadlines are written beside its box, right of the column and its lanes;
* moves open from every open stage (withdraw, left custody) are one box beside their destination,
  "From any open stage", with one arrow: not a line from every stage.

The layout depends on the spec only (cached), so it is the same on every request; the case's current
stage and the stages it has visited are marked by colour *and* by words inside the box.

No inline styles (the CSP forbids them): presentation attributes and classes styled in app.css.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

from reprisals.vocabulary import deadline_words
from workflow.spec import WorkflowSpec

BODY = 19  # px: GOV.UK body text (.govuk-body, 1.1875rem); every text in the drawing is this size
LINE = 25  # px between lines of text
PAD = 10
LANE = 16  # between two lanes
MARGIN = 12
NODE_MIN_W = 180
NODE_H = 2 * LINE + 2 * PAD  # the stage's name and its state ("Current stage")
GAP_MIN = 44  # between two boxes: room for an arrow
LABEL_W = 240  # lane and arrow labels wrap at this width
DEADLINE_W = 300  # deadlines wrap at this width
ANY_W = 260

CURRENT_FILL, CURRENT_TEXT = "#1d70b8", "#ffffff"
VISITED_FILL, VISITED_TEXT = "#cce2d8", "#0b0c0c"
PLAIN_FILL, PLAIN_TEXT = "#ffffff", "#0b0c0c"
INK = "#0b0c0c"
STROKE = "#505a5f"

# Advance widths of Arial (and Liberation Sans, metric-compatible) in thousandths of an em, to wrap and
# place text without a browser. Unknown characters count as wide.
_WIDTHS = {
    **dict.fromkeys("ijl'|", 222), **dict.fromkeys("ft!,./:;I[]\\ ", 278), **dict.fromkeys("r()-`{}", 333),
    **dict.fromkeys("\"", 355), **dict.fromkeys("*^", 389), **dict.fromkeys("ckszvxyJ", 500),
    **dict.fromkeys("abdeghnopqu0123456789$#?_L~", 556), **dict.fromkeys("+<=>", 584),
    **dict.fromkeys("FTZ", 611), **dict.fromkeys("ABEKPSVXY&", 667), **dict.fromkeys("wCDHNRU", 722),
    **dict.fromkeys("GOQ", 778), **dict.fromkeys("mM", 833), **dict.fromkeys("%", 889),
    **dict.fromkeys("W@", 944), "\u2019": 222, "\u2018": 222, "\u201c": 333, "\u201d": 333, "\u2013": 556,
    "\u2014": 1000,
}


def text_width(text: str, *, bold: bool = False) -> float:
    """The width of ``text`` at ``BODY`` px, a little generous (bold is about 8% wider)."""
    em = sum(_WIDTHS.get(ch, 1000 if ord(ch) > 127 else 600) for ch in text) / 1000
    return em * BODY * (1.1 if bold else 1.03)


def wrap(text: str, width: float, *, bold: bool = False) -> list[str]:
    """Greedy word wrap at ``width`` px (a word longer than the width stands on its own line)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if line and text_width(candidate, bold=bold) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines or [""]


@dataclass(frozen=True)
class Edge:
    source: str
    dest: str
    labels: tuple[str, ...]

    @property
    def label(self) -> str:
        return " / ".join(self.labels)


@dataclass
class _Lane:
    """A move drawn beside the column: out of its source's side, along the lane, into its destination's."""

    edge: Edge
    source_row: int
    dest_row: int
    side: str = "left"  # or "right"
    index: int = 0  # 0 nearest the column
    lines: list[str] = field(default_factory=list)  # its label, wrapped

    @property
    def top(self) -> int:
        return min(self.source_row, self.dest_row)

    @property
    def bottom(self) -> int:
        return max(self.source_row, self.dest_row)

    @property
    def span(self) -> tuple[int, int]:
        return self.top, self.bottom


@dataclass(frozen=True)
class Layout:
    """Everything about the drawing that does not depend on the case."""

    stages: tuple[str, ...]
    stage_labels: dict[str, str]
    straight: tuple[Edge, ...]
    lanes: tuple[_Lane, ...]
    anywhere: Edge | None
    any_y: float  # where its arrow meets its destination's box
    deadlines: dict[str, tuple[str, ...]]  # each stage's deadlines in words
    node_x: float
    node_w: float
    node_y: dict[str, float]  # each box's top
    box_h: dict[str, float]
    ports: dict[tuple[int, str, str], float]  # (lane id, stage, "out"|"in") -> y
    lane_x: dict[int, float]
    gap_text: tuple[tuple[float, float, str, str], ...]  # x, y, anchor, text
    deadline_x: float
    width: float
    height: float


def _edges(spec: WorkflowSpec) -> tuple[list[Edge], Edge | None]:
    open_stages = set(spec.open_stages)
    pairs: dict[tuple[str, str], list[str]] = {}
    anywhere: dict[str, list[str]] = {}
    for trig in spec.triggers.values():
        if trig.dest is None:  # stays at its stage: no move to draw (the list names it)
            continue
        if len(open_stages) > 2 and set(trig.sources) == open_stages:
            anywhere.setdefault(trig.dest, []).append(trig.label)
            continue
        for src in trig.sources:
            pairs.setdefault((src, trig.dest), []).append(trig.label)
    edges = [Edge(s, d, tuple(labels)) for (s, d), labels in pairs.items()]
    any_edge = None
    if len(anywhere) == 1:
        dest, labels = next(iter(anywhere.items()))
        any_edge = Edge("*", dest, tuple(labels))
    else:  # several destinations: draw them as ordinary moves from each stage
        for dest, labels in anywhere.items():
            edges += [Edge(s, dest, tuple(labels)) for s in spec.open_stages]
    return edges, any_edge


_LAYOUTS: dict[tuple[str, int, int], Layout] = {}


def _layout(spec: WorkflowSpec) -> Layout:
    key = (spec.key, spec.version, hash(spec.text))
    found = _LAYOUTS.get(key)
    if found is None:
        found = _LAYOUTS[key] = _compute_layout(spec)
    return found


def _interleave(a: _Lane, b: _Lane) -> bool:
    """Spans that overlap without one holding the other: on one side, their lanes would cross."""
    (a1, a2), (b1, b2) = a.span, b.span
    return (a1 < b1 < a2 < b2) or (b1 < a1 < b2 < a2)


def _sides(lanes: list[_Lane]) -> None:
    """Left by default; a lane that interleaves with one already on the left goes right (the longest
    spans are placed first, so the long back edges stay on the left)."""
    placed: list[_Lane] = []
    for lane in sorted(lanes, key=lambda x: (-(x.bottom - x.top), x.top)):
        on_left = [p for p in placed if p.side == "left" and _interleave(p, lane)]
        on_right = [p for p in placed if p.side == "right" and _interleave(p, lane)]
        lane.side = "right" if on_left and not on_right else "left"
        placed.append(lane)


def _port_order(lanes: list[_Lane], row: int) -> list[tuple[_Lane, str]]:
    """The lane ends on one side of a box, top to bottom, so that no lane crosses another there:
    lanes going up first (the outer one lower), then lanes that leave and return here, then lanes
    going down (the outer one higher)."""
    up: list[tuple[_Lane, str]] = []
    loops: list[tuple[_Lane, str]] = []
    down: list[tuple[_Lane, str]] = []
    for lane in lanes:
        if lane.top == lane.bottom == row:
            loops += [(lane, "out"), (lane, "in")]
        elif row in lane.span:
            end = "out" if lane.source_row == row else "in"
            (up if lane.bottom == row else down).append((lane, end))
    up.sort(key=lambda p: p[0].index)
    down.sort(key=lambda p: -p[0].index)
    return up + loops + down


def _compute_layout(spec: WorkflowSpec) -> Layout:
    stages = tuple(spec.stages)
    index = {s: i for i, s in enumerate(stages)}
    labels = {s: spec.stages[s].label for s in stages}
    edges, anywhere = _edges(spec)
    straight = [e for e in edges if index[e.dest] == index[e.source] + 1]
    lanes = [_Lane(e, index[e.source], index[e.dest]) for e in edges if e not in straight]
    _sides(lanes)
    for side in ("left", "right"):
        mine = sorted((lane for lane in lanes if lane.side == side),
                      key=lambda x: (x.bottom - x.top, x.top, index[x.edge.source]))
        for i, lane in enumerate(mine):
            lane.index = i
    for lane in lanes:
        lane.lines = [line for label in lane.edge.labels for line in wrap(label, LABEL_W)]
    n_left = sum(1 for lane in lanes if lane.side == "left")
    n_right = sum(1 for lane in lanes if lane.side == "right")

    node_w = max(NODE_MIN_W, *(text_width(labels[s], bold=True) + 2 * PAD for s in stages),
                 text_width("Current stage") + 2 * PAD)
    straight_lines = {index[e.source]: [line for label in e.labels for line in wrap(label, LABEL_W)]
                      for e in straight}
    left_labels = [line for lane in lanes if lane.side == "left" for line in lane.lines]
    corridor = max([text_width(line) for line in left_labels]
                   + [text_width(line) - node_w / 2 + PAD for lines in straight_lines.values() for line in lines]
                   + [0.0])
    left_edge = MARGIN + n_left * LANE
    corridor_x = left_edge + PAD
    node_x = corridor_x + corridor + PAD + (PAD if n_left else 0)
    lane_x: dict[int, float] = {}
    for lane in lanes:
        if lane.side == "left":
            lane_x[id(lane)] = left_edge - lane.index * LANE - LANE / 2
        else:
            lane_x[id(lane)] = node_x + node_w + PAD + lane.index * LANE + LANE / 2
    deadline_x = node_x + node_w + PAD + n_right * LANE + (2 * PAD if n_right else PAD)
    deadlines = {s: tuple(deadline_words(d) for d in spec.stages[s].deadlines) for s in stages}
    deadline_lines = {s: [line for text in deadlines[s] for line in wrap(text, DEADLINE_W)] for s in stages}
    any_lines = []
    if anywhere is not None:
        any_lines = ["From any open stage:"] + [line for label in anywhere.labels for line in wrap(label, ANY_W)]

    # Ports: the lane ends on each side of each box, and the box's height to hold them.
    ports: dict[tuple[int, str, str], float] = {}
    order: dict[tuple[str, str], list[tuple[_Lane, str]]] = {}
    for s in stages:
        for side in ("left", "right"):
            order[(s, side)] = _port_order([lane for lane in lanes if lane.side == side], index[s])
    any_here = {s: 1 if anywhere is not None and anywhere.dest == s else 0 for s in stages}
    box_h = {s: float(max(NODE_H, (max(len(order[(s, "left")]), len(order[(s, "right")]) + any_here[s]) + 1) * 12))
             for s in stages}

    # Rows: each stage's band (its box, its deadlines beside it, the "any stage" box beside its
    # destination), then the gap below it (the labels of the moves out of it).
    node_y: dict[str, float] = {}
    any_y = 0.0
    gap_text: list[tuple[float, float, str, str]] = []
    y = float(MARGIN)
    cx = node_x + node_w / 2
    for i, s in enumerate(stages):
        node_y[s] = y
        beside = len(deadline_lines[s]) * LINE + PAD
        if anywhere is not None and anywhere.dest == s:
            beside = max(beside, len(any_lines) * LINE + 2 * PAD)
        for side in ("left", "right"):
            ends = order[(s, side)]
            step = box_h[s] / (len(ends) + 1 + (any_here[s] if side == "right" else 0))
            for k, (lane, end) in enumerate(ends):
                ports[(id(lane), s, end)] = y + step * (k + 1)
            if side == "right" and any_here[s]:
                any_y = y + step * (len(ends) + 1)  # below every right lane's end: it crosses none
        y += max(box_h[s], beside)  # the band: the box, and beside it its deadlines
        if i == len(stages) - 1:
            break
        nxt = stages[i + 1]
        # Left of the column: labels of left lanes leaving this stage downwards (and loops), the arrow's
        # label, labels of left lanes leaving the next stage upwards. Right: the same for right lanes.
        columns: dict[str, list[tuple[str, str]]] = {"left": [], "right": []}
        for side in ("left", "right"):
            for lane in lanes:
                if lane.side == side and lane.edge.source == s and index[lane.edge.dest] >= i:
                    columns[side] += [(line, "lane") for line in lane.lines]
            if side == "left":
                columns[side] += [(line, "arrow") for line in straight_lines.get(i, [])]
            for lane in lanes:
                if lane.side == side and lane.edge.source == nxt and index[lane.edge.dest] <= i:
                    columns[side] += [(line, "lane") for line in lane.lines]
        rows = max(len(columns["left"]), len(columns["right"]))
        gap = max(GAP_MIN, rows * LINE + 2 * PAD)
        for side in ("left", "right"):
            for k, (line, kind) in enumerate(columns[side]):
                ty = y + PAD + (k + 1) * LINE - 6
                if side == "right":
                    gap_text.append((deadline_x, ty, "start", line))
                elif kind == "arrow":
                    gap_text.append((cx - PAD, ty, "end", line))
                else:
                    gap_text.append((corridor_x, ty, "start", line))
        y += gap
    width = max(deadline_x + max([text_width(line) for lines in deadline_lines.values() for line in lines]
                                 + [text_width(line) for lane in lanes if lane.side == "right" for line in lane.lines]
                                 + [max((text_width(line) for line in any_lines), default=0) + 2 * PAD, 0.0]),
                node_x + node_w + n_right * LANE + 2 * PAD) + MARGIN
    return Layout(stages, labels, tuple(straight), tuple(lanes), anywhere, any_y, deadlines, node_x, node_w, node_y,
                  box_h, ports, lane_x, tuple(gap_text), deadline_x, round(width), round(y + MARGIN))


def _text(x: float, y: float, content: str, *, cls: str, anchor: str = "start", fill: str = INK,
          bold: bool = False) -> str:
    weight = ' font-weight="700"' if bold else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}" fill="{fill}" '
            f'font-size="{BODY}"{weight}>{escape(content)}</text>')


def _description(spec: WorkflowSpec, layout: Layout, current: str | None, seen: set[str]) -> str:
    labels = layout.stage_labels
    order = ", ".join(f"{labels[s]}{' (current)' if s == current else ' (visited)' if s in seen else ''}"
                      for s in layout.stages)
    moves = [f"{e.label}: {labels[e.source]} to {labels[e.dest]}" if e.source != e.dest else
             f"{e.label}: again, staying at {labels[e.source]}"
             for e in (*layout.straight, *(lane.edge for lane in layout.lanes))]
    if layout.anywhere:
        moves.append(f"{layout.anywhere.label}: from any open stage to {labels[layout.anywhere.dest]}")
    at = f"The case is at stage {labels.get(current, current)}. " if current else ""
    return f"{at}Stages in order: {order}. Possible moves: {'; '.join(moves)}."


def render_svg(spec: WorkflowSpec, current: str | None, visited: Iterable[str] = (), *,
               element_id: str = "diagram") -> str:
    """The diagram as an SVG document fragment (usable inline in HTML or as an image/svg+xml body)."""
    layout = _layout(spec)
    seen = set(visited) - {current}
    labels = layout.stage_labels
    out: list[str] = []
    w, h = layout.width, layout.height
    title = f"{spec.title}: current stage {labels.get(current, current)}" if current else spec.title
    out.append(f'<svg xmlns="http://www.w3.org/2000/svg" class="app-diagram" role="img" '
               f'viewBox="0 0 {w:g} {h:g}" width="{w:g}" height="{h:g}" '
               f'aria-labelledby="{element_id}-title {element_id}-desc" font-family="arial, sans-serif">')
    out.append(f'<title id="{element_id}-title">{escape(title)}</title>')
    out.append(f'<desc id="{element_id}-desc">{escape(_description(spec, layout, current, seen))}</desc>')
    out.append(f'<defs><marker id="{element_id}-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
               f'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{STROKE}"/>'
               "</marker></defs>")
    arrow = f' marker-end="url(#{element_id}-arrow)"'
    left, right = layout.node_x, layout.node_x + layout.node_w
    cx = layout.node_x + layout.node_w / 2
    box_bottom = {s: layout.node_y[s] + layout.box_h[s] for s in layout.stages}

    for e in layout.straight:
        y1, y2 = box_bottom[e.source], layout.node_y[e.dest]
        out.append(f'<line x1="{cx:.1f}" y1="{y1:.1f}" x2="{cx:.1f}" y2="{y2:.1f}" stroke="{STROKE}" stroke-width="2"'
                   f'{arrow} class="app-diagram__edge"/>')
    for lane in layout.lanes:
        x = layout.lane_x[id(lane)]
        side_x = left if lane.side == "left" else right
        ys = layout.ports[(id(lane), lane.edge.source, "out")]
        yd = layout.ports[(id(lane), lane.edge.dest, "in")]
        back = " app-diagram__edge--back" if layout.stages.index(lane.edge.dest) <= layout.stages.index(
            lane.edge.source) else ""
        out.append(f'<path d="M {side_x:.1f} {ys:.1f} H {x:.1f} V {yd:.1f} H {side_x:.1f}" fill="none" '
                   f'stroke="{STROKE}" stroke-width="2"{arrow} class="app-diagram__edge{back}"/>')
    for x, y, anchor, line in layout.gap_text:
        out.append(_text(x, y, line, cls="app-diagram__label", anchor=anchor))
    for s in layout.stages:
        for k, line in enumerate(line for text in layout.deadlines[s] for line in wrap(text, DEADLINE_W)):
            out.append(_text(layout.deadline_x, layout.node_y[s] + (k + 1) * LINE - 4, line,
                             cls="app-diagram__deadline"))
    if layout.anywhere is not None:
        e = layout.anywhere
        top = layout.node_y[e.dest]
        lines = ["From any open stage:"] + [line for label in e.labels for line in wrap(label, ANY_W)]
        box_w = max(text_width(line) for line in lines) + 2 * PAD
        box_x = layout.deadline_x
        box_h = len(lines) * LINE + PAD
        out.append(f'<rect x="{box_x:.1f}" y="{top:.1f}" width="{box_w:.1f}" height="{box_h:.1f}" rx="4" '
                   f'fill="#ffffff" stroke="{STROKE}" stroke-width="2" stroke-dasharray="6 4" '
                   'class="app-diagram__any"/>')
        for k, line in enumerate(lines):
            out.append(_text(box_x + PAD, top + (k + 1) * LINE - 2, line, cls="app-diagram__label", bold=k == 0))
        out.append(f'<path d="M {box_x:.1f} {layout.any_y:.1f} H {right:.1f}" fill="none" stroke="{STROKE}" '
                   f'stroke-width="2" stroke-dasharray="6 4"{arrow} class="app-diagram__edge app-diagram__edge--any"/>')

    # Boxes last, so lines end under them.
    for s in layout.stages:
        y = layout.node_y[s]
        if s == current:
            fill, ink, state, width, cls = CURRENT_FILL, CURRENT_TEXT, "Current stage", 4, " app-diagram__node--current"
        elif s in seen:
            fill, ink, state, width, cls = VISITED_FILL, VISITED_TEXT, "Visited", 2, " app-diagram__node--visited"
        else:
            fill, ink, state, width, cls = PLAIN_FILL, PLAIN_TEXT, "", 2, ""
        out.append(f'<g class="app-diagram__node{cls}" data-stage={quoteattr(s)}>')
        out.append(f'<rect x="{left:.1f}" y="{y:.1f}" width="{layout.node_w:.1f}" height="{layout.box_h[s]:.1f}" '
                   f'rx="4" fill="{fill}" stroke="{INK}" stroke-width="{width}"/>')
        mid = y + layout.box_h[s] / 2
        if state:
            out.append(_text(cx, mid - 4, labels[s], cls="app-diagram__stage", anchor="middle", fill=ink, bold=True))
            out.append(_text(cx, mid + LINE - 6, state, cls="app-diagram__state", anchor="middle", fill=ink))
        else:
            out.append(_text(cx, mid + 7, labels[s], cls="app-diagram__stage", anchor="middle", fill=ink, bold=True))
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def render_list(spec: WorkflowSpec, current: str | None, visited: Iterable[str] = ()) -> str:
    """The protocol as an ordered list of its stages, each with its deadlines and the actions out of it
    (for narrow screens, where the drawing would have to shrink)."""
    seen = set(visited) - {current}
    layout = _layout(spec)
    labels = layout.stage_labels
    any_names = set(layout.anywhere.labels) if layout.anywhere else set()
    out = ['<ol class="govuk-list govuk-list--number app-diagram-list">']
    for s in layout.stages:
        state = ("Current stage" if s == current else "Visited" if s in seen else "")
        tag = (f' <strong class="govuk-tag{" govuk-tag--green" if state == "Visited" else ""}">{state}</strong>'
               if state else "")
        out.append(f'<li class="app-diagram-list__stage" data-stage={quoteattr(s)}>')
        out.append(f'<h3 class="govuk-heading-s govuk-!-margin-bottom-1">{escape(labels[s])}{tag}</h3>')
        if layout.deadlines[s]:
            out.append('<p class="govuk-body govuk-!-margin-bottom-1">Deadlines:</p>'
                       '<ul class="govuk-list govuk-list--bullet">'
                       + "".join(f"<li>{escape(d)}</li>" for d in layout.deadlines[s]) + "</ul>")
        actions = []
        for trig in spec.triggers_from(s):
            if trig.label in any_names and set(trig.sources) == set(spec.open_stages):
                continue
            where = (f"stays at {labels[s]}" if trig.dest is None
                     else f"to {labels[s]} again" if trig.dest == s else f"to {labels.get(trig.dest, trig.dest)}")
            actions.append(f"<li>{escape(trig.label)} ({escape(where)})</li>")
        if actions:
            out.append('<p class="govuk-body govuk-!-margin-bottom-1">Actions:</p>'
                       f'<ul class="govuk-list govuk-list--bullet">{"".join(actions)}</ul>')
        elif spec.stages[s].final:
            out.append('<p class="govuk-body">The case is closed here.</p>' if not any(
                t.sources == (s,) for t in spec.triggers.values()) else "")
        out.append("</li>")
    out.append("</ol>")
    if layout.anywhere is not None:
        e = layout.anywhere
        out.append(f'<p class="govuk-body app-diagram-list">From any open stage: '
                   f'{escape(", ".join(e.labels))} (to {escape(labels[e.dest])}).</p>')
    return "".join(out)


def render_diagram(spec: WorkflowSpec, current: str | None, visited: Iterable[str] = (), *,
                   element_id: str = "diagram") -> Markup:
    """Both: the drawing for wide screens and the list for narrow ones (app.css shows one of them).
    Markup is safe here: both escape every text and attribute they take from the spec."""
    visited = set(visited)
    return Markup(render_svg(spec, current, visited, element_id=element_id)  # noqa: S704
                  + render_list(spec, current, visited))


def visited_stages(to_stages: Iterable[str | None]) -> set[str]:
    """The stages a case has been in, from its history's ``to_stage`` values."""
    return {s for s in to_stages if s}
