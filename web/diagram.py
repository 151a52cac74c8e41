"""The protocol diagram of a case: an SVG drawn in pure Python from the workflow spec.

Stages stand in one column in protocol order; a move to the next stage is an arrow straight down,
labelled with its trigger(s); other moves run in lanes beside the column (forward on the right,
backward on the left, each label written along its lane); triggers open from every open stage
(withdraw, left custody) share one bracket on the far left. The layout depends on the spec only, so
it is the same on every request; the case's current stage and the stages it has visited are marked
by colour *and* by words inside the node.

No inline styles (the CSP forbids them): presentation attributes and classes styled in app.css.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from workflow.spec import WorkflowSpec

NODE_W = 240
NODE_H = 48
ROW = 96  # vertical distance between node tops
LANE = 28
TOP = 24
LABEL_ROOM = 190  # right of the column, for labels of straight-down arrows

CURRENT_FILL, CURRENT_TEXT = "#1d70b8", "#ffffff"
VISITED_FILL, VISITED_TEXT = "#cce2d8", "#0b0c0c"
PLAIN_FILL, PLAIN_TEXT = "#ffffff", "#0b0c0c"
LINE = "#505a5f"


@dataclass(frozen=True)
class Edge:
    source: str
    dest: str
    labels: tuple[str, ...]

    @property
    def label(self) -> str:
        return " / ".join(self.labels)


@dataclass(frozen=True)
class Layout:
    """Everything about the drawing that does not depend on the case."""

    stages: tuple[str, ...]
    stage_labels: dict[str, str]
    straight: tuple[Edge, ...]
    right: tuple[Edge, ...]
    left: tuple[Edge, ...]
    anywhere: Edge | None  # from every open stage to one destination
    node_x: int
    width: int
    height: int

    def y(self, stage: str) -> int:
        return TOP + self.stages.index(stage) * ROW


def _edges(spec: WorkflowSpec) -> tuple[list[Edge], Edge | None]:
    open_stages = set(spec.open_stages)
    pairs: dict[tuple[str, str], list[str]] = {}
    anywhere: dict[str, list[str]] = {}
    for trig in spec.triggers.values():
        if trig.dest is None:  # stays at its stage: no move to draw
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
    else:  # several destinations: draw them as ordinary edges from each stage
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


def _compute_layout(spec: WorkflowSpec) -> Layout:
    stages = tuple(spec.stages)
    index = {s: i for i, s in enumerate(stages)}
    edges, anywhere = _edges(spec)
    straight = [e for e in edges if index[e.dest] == index[e.source] + 1]
    # Shorter spans nearer the column, so lanes nest instead of crossing; ties in spec order.
    right = sorted((e for e in edges if index[e.dest] > index[e.source] + 1 or e.dest == e.source),
                   key=lambda e: (abs(index[e.dest] - index[e.source]), index[e.source]))
    left = sorted((e for e in edges if index[e.dest] < index[e.source]),
                  key=lambda e: (index[e.source] - index[e.dest], index[e.source]))
    n_left = len(left) + (1 if anywhere else 0)
    node_x = 24 + n_left * LANE + 16
    width = node_x + NODE_W + LABEL_ROOM + len(right) * LANE + 40
    height = TOP + len(stages) * ROW
    return Layout(stages, {s: spec.stages[s].label for s in stages}, tuple(straight), tuple(right), tuple(left),
                  anywhere, node_x, width, height)


def _ports(edges: Iterable[Edge], stage: str) -> list[tuple[Edge, str]]:
    """Every lane end at ``stage``, in lane order: (edge, 'out'|'in')."""
    out: list[tuple[Edge, str]] = []
    for e in edges:
        if e.source == stage:
            out.append((e, "out"))
        if e.dest == stage:
            out.append((e, "in"))
    return out


def _port_y(layout: Layout, edges: tuple[Edge, ...], edge: Edge, stage: str, end: str) -> int:
    ports = _ports(edges, stage)
    i = ports.index((edge, end))
    step = NODE_H // (len(ports) + 1)
    return layout.y(stage) + step * (i + 1)


def _text(x: float, y: float, content: str, *, cls: str, anchor: str = "start", extra: str = "",
          fill: str = PLAIN_TEXT, size: int = 13) -> str:
    return (f'<text x="{x:g}" y="{y:g}" class="{cls}" text-anchor="{anchor}" fill="{fill}" font-size="{size}"{extra}>'
            f"{escape(content)}</text>")


def render_svg(spec: WorkflowSpec, current: str, visited: Iterable[str] = (), *, element_id: str = "diagram") -> str:
    """The diagram as an SVG document fragment (usable inline in HTML or as an image/svg+xml body)."""
    layout = _layout(spec)
    seen = set(visited) - {current}
    out: list[str] = []
    labels = layout.stage_labels
    current_label = labels.get(current, current)
    order = ", ".join(f"{labels[s]}{' (current)' if s == current else ' (visited)' if s in seen else ''}"
                      for s in layout.stages)
    moves = [f"{e.label}: {labels[e.source]} to {labels[e.dest]}" if e.source != e.dest else
             f"{e.label}: again, staying at {labels[e.source]}"
             for e in (*layout.straight, *layout.right, *layout.left)]
    if layout.anywhere:
        moves.append(f"{layout.anywhere.label}: from any open stage to {labels[layout.anywhere.dest]}")
    desc = (f"The case is at stage {current_label}. Stages in order: {order}. Possible moves: {'; '.join(moves)}.")
    out.append(f'<svg xmlns="http://www.w3.org/2000/svg" class="app-diagram" role="img" '
               f'viewBox="0 0 {layout.width} {layout.height}" width="{layout.width}" height="{layout.height}" '
               f'aria-labelledby="{element_id}-title {element_id}-desc" font-family="arial, sans-serif">')
    out.append(f'<title id="{element_id}-title">{escape(spec.title)}: current stage {escape(current_label)}</title>')
    out.append(f'<desc id="{element_id}-desc">{escape(desc)}</desc>')
    out.append(f'<defs><marker id="{element_id}-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
               f'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{LINE}"/>'
               "</marker></defs>")
    arrow = f' marker-end="url(#{element_id}-arrow)"'
    cx = layout.node_x + NODE_W // 2
    left_x = layout.node_x
    right_x = layout.node_x + NODE_W

    # Straight-down moves, labelled in the gap between the two nodes.
    for e in layout.straight:
        y1 = layout.y(e.source) + NODE_H
        y2 = layout.y(e.dest)
        out.append(f'<line x1="{cx}" y1="{y1}" x2="{cx}" y2="{y2}" stroke="{LINE}" stroke-width="2"{arrow} '
                   'class="app-diagram__edge"/>')
        out.append(_text(cx + 8, (y1 + y2) / 2 + 4, e.label, cls="app-diagram__label"))

    # Forward jumps and loops, in lanes on the right.
    for i, e in enumerate(layout.right):
        lx = right_x + LABEL_ROOM + i * LANE
        ys = _port_y(layout, layout.right, e, e.source, "out")
        yd = _port_y(layout, layout.right, e, e.dest, "in")
        out.append(f'<path d="M {right_x} {ys} H {lx} V {yd} H {right_x}" fill="none" stroke="{LINE}" '
                   f'stroke-width="2"{arrow} class="app-diagram__edge"/>')
        mid = (ys + yd) / 2
        out.append(_text(lx + 6, mid, e.label, cls="app-diagram__label", anchor="middle",
                         extra=f' transform="rotate(90 {lx + 6:g} {mid:g})"'))
    # Backward moves, in lanes on the left.
    for i, e in enumerate(layout.left):
        lx = left_x - 16 - (i + 1) * LANE
        ys = _port_y(layout, layout.left, e, e.source, "out")
        yd = _port_y(layout, layout.left, e, e.dest, "in")
        out.append(f'<path d="M {left_x} {ys} H {lx} V {yd} H {left_x}" fill="none" stroke="{LINE}" '
                   f'stroke-width="2"{arrow} class="app-diagram__edge app-diagram__edge--back"/>')
        mid = (ys + yd) / 2
        out.append(_text(lx - 6, mid, e.label, cls="app-diagram__label", anchor="middle",
                         extra=f' transform="rotate(-90 {lx - 6:g} {mid:g})"'))
    # From any open stage: one bracket on the far left.
    if layout.anywhere is not None:
        e = layout.anywhere
        lx = left_x - 16 - (len(layout.left) + 1) * LANE
        opens = [s for s in layout.stages if s in spec.open_stages]
        top = layout.y(opens[0]) + 4
        bottom = layout.y(opens[-1]) + NODE_H - 4
        yd = layout.y(e.dest) + NODE_H // 2
        for s in opens:
            ys = layout.y(s) + NODE_H - 8
            out.append(f'<line x1="{left_x}" y1="{ys}" x2="{lx}" y2="{ys}" stroke="{LINE}" stroke-width="1" '
                       'stroke-dasharray="4 3" class="app-diagram__edge"/>')
        out.append(f'<path d="M {lx} {top} V {yd} H {left_x}" fill="none" stroke="{LINE}" stroke-width="2" '
                   f'stroke-dasharray="6 4"{arrow} class="app-diagram__edge app-diagram__edge--any"/>')
        mid = (top + bottom) / 2
        out.append(_text(lx - 6, mid, f"From any open stage: {e.label}", cls="app-diagram__label",
                         anchor="middle", extra=f' transform="rotate(-90 {lx - 6:g} {mid:g})"'))

    # Nodes last, so lines end under them.
    for s in layout.stages:
        y = layout.y(s)
        if s == current:
            fill, ink, state, width, cls = CURRENT_FILL, CURRENT_TEXT, "Current stage", 4, " app-diagram__node--current"
        elif s in seen:
            fill, ink, state, width, cls = VISITED_FILL, VISITED_TEXT, "Visited", 2, " app-diagram__node--visited"
        else:
            fill, ink, state, width, cls = PLAIN_FILL, PLAIN_TEXT, "", 2, ""
        out.append(f'<g class="app-diagram__node{cls}" data-stage={quoteattr(s)}>')
        out.append(f'<rect x="{left_x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="4" fill="{fill}" '
                   f'stroke="#0b0c0c" stroke-width="{width}"/>')
        if state:
            out.append(_text(cx, y + 21, labels[s], cls="app-diagram__stage", anchor="middle", fill=ink, size=16))
            out.append(_text(cx, y + 38, state, cls="app-diagram__state", anchor="middle", fill=ink, size=12))
        else:
            out.append(_text(cx, y + 29, labels[s], cls="app-diagram__stage", anchor="middle", fill=ink, size=16))
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def visited_stages(to_stages: Iterable[str | None]) -> set[str]:
    """The stages a case has been in, from its history's ``to_stage`` values."""
    return {s for s in to_stages if s}
