"""Message templates: Jinja, one subject, a text body and an HTML body per message kind.

``StrictUndefined`` makes a missing variable an error, never an empty gap in an e-mail; ``check``
renders every template with a sample context at start-up so such a mistake stops the process
before the first message, not at 3 a.m. in the scheduler.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2


class TemplateProblem(Exception):
    def __init__(self, template: str, message: str) -> None:
        self.template = template
        super().__init__(f"message template '{template}': {message}")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Templates:
    """Templates ``NAME.subject.txt``, ``NAME.txt`` and ``NAME.html`` from a Jinja loader."""

    def __init__(self, loader: jinja2.BaseLoader, names: Iterable[str]) -> None:
        self.names = tuple(names)
        self._text = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, autoescape=False,  # noqa: S701 - plain text
                                        keep_trailing_newline=True)
        self._html = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, autoescape=True)

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        if name not in self.names:
            raise TemplateProblem(name, f"unknown template (known: {', '.join(self.names)})")
        try:
            subject = self._text.get_template(f"{name}.subject.txt").render(context)
            text = self._text.get_template(f"{name}.txt").render(context)
            html = self._html.get_template(f"{name}.html").render(context)
        except jinja2.UndefinedError as exc:
            raise TemplateProblem(name, f"a variable is missing: {exc.message}") from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateProblem(name, f"file {exc.name} not found") from None
        except jinja2.TemplateError as exc:
            raise TemplateProblem(name, str(exc)) from None
        return Rendered(" ".join(subject.split()), text, html)

    def check(self, samples: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Render each template with its sample context; return one line per problem."""
        problems = []
        for name in self.names:
            if name not in samples:
                problems.append(f"message template '{name}': no sample context to check it with")
                continue
            try:
                self.render(name, samples[name])
            except TemplateProblem as exc:
                problems.append(str(exc))
        return problems
