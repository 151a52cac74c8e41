"""Message templates: Jinja, one subject, a text body and an HTML body per message kind.

``StrictUndefined`` makes a missing variable an error, never an empty gap in an e-mail; ``check``
renders every template with a sample context at start-up so such a mistake stops the process
before the first message, not at 3 a.m. in the scheduler.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.bccache import Bucket


class TemplateProblem(Exception):
    def __init__(self, template: str, message: str) -> None:
        self.template = template
        super().__init__(f"message template '{template}': {message}")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates kept for the whole process, for environments configured alike (one instance per
    configuration: the compiled code depends on it). A process that builds many environments with the same
    loader (an app or a runtime per test) compiled every template afresh each time; Jinja checks each entry
    against its template's source, so an edited template is compiled again."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            self._code[bucket.key] = bucket.bytecode_to_string()


_TEXT_CODE = CompiledTemplates()
_HTML_CODE = CompiledTemplates()


class Templates:
    """Templates ``NAME.subject.txt``, ``NAME.txt`` and ``NAME.html`` from a Jinja loader."""

    def __init__(self, loader: jinja2.BaseLoader, names: Iterable[str]) -> None:
        self.names = tuple(names)
        # auto_reload off: templates are read once per process (a deploy restarts it), not checked against
        # their files' mtimes on every message.
        self._text = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, autoescape=False,  # noqa: S701 - plain text
                                        keep_trailing_newline=True, auto_reload=False,
                                        bytecode_cache=_TEXT_CODE)
        self._html = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, autoescape=True,
                                        auto_reload=False, bytecode_cache=_HTML_CODE)
        self._compiled: dict[str, tuple[jinja2.Template, jinja2.Template, jinja2.Template]] = {}

    def _templates(self, name: str) -> tuple[jinja2.Template, jinja2.Template, jinja2.Template]:
        """The subject, text and HTML templates of ``name``, loaded and compiled on first use."""
        compiled = self._compiled.get(name)
        if compiled is None:
            compiled = (self._text.get_template(f"{name}.subject.txt"), self._text.get_template(f"{name}.txt"),
                        self._html.get_template(f"{name}.html"))
            self._compiled[name] = compiled
        return compiled

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        if name not in self.names:
            raise TemplateProblem(name, f"unknown template (known: {', '.join(self.names)})")
        try:
            subject_template, text_template, html_template = self._templates(name)
            subject = subject_template.render(context)
            text = text_template.render(context)
            html = html_template.render(context)
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
