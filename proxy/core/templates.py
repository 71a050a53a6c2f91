"""Prompt templates (agents' `system`, chain steps' prompts), rendered safely with a sandboxed Jinja2.

Chain templates come from any key holder, so a template must not reach Python internals nor make the gateway
do unbounded work. On top of `jinja2.sandbox.ImmutableSandboxedEnvironment` (no mutation of the values passed
in, no `__class__`-style attributes):

* no attribute access at all at render time (`steps.a.output` reads dict items; `x.__class__`, `x.upper()` fail)
  and `_`-prefixed names are refused when the template is compiled;
* no globals (`range`, `lipsum`, `cycler`, ...), no loops, macros, call/filter blocks, includes or inheritance:
  a template is substitutions, conditions and a short list of filters whose output is linear in their input;
* `*` and `**` are bounded (`'a' * 10**9` is refused) and the rendered text is cut off at `max_chars`.

Lives in proxy.core because gateway.yaml's validation (proxy.config) compiles the declared templates too.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS = 200_000  # one rendered template
MAX_SOURCE_CHARS = 100_000
_MAX_REPEAT = 10_000  # `x * n` with a string or list operand
# each linear in its input: nothing here can blow a short template up into a huge string
SAFE_FILTERS = ("default", "d", "lower", "upper", "title", "capitalize", "trim", "truncate", "length", "count",
                "first", "last", "tojson", "string", "int", "float", "round", "abs", "wordcount", "striptags", "e",
                "escape")
_REFUSED = {nodes.For: "loops", nodes.Macro: "macros", nodes.CallBlock: "call blocks",
            nodes.FilterBlock: "filter blocks", nodes.Include: "include", nodes.Import: "import",
            nodes.FromImport: "import", nodes.Extends: "extends", nodes.Block: "blocks"}


class TemplateError(ValueError):
    """A template that does not compile or may not render; the message says why (no traceback, no values)."""


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(("*", "**"))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return False  # data is plain dicts, read by item; methods and internals stay out of reach

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and (not isinstance(right, int | float) or abs(right) > 64):
            raise SecurityError("'**' is limited to exponents up to 64")
        if operator == "*":
            n = right if isinstance(left, str | list | tuple) else left if isinstance(right, str | list | tuple) else 1
            if isinstance(n, int) and n > _MAX_REPEAT:
                raise SecurityError(f"repeating a string or list more than {_MAX_REPEAT} times is not allowed")
        return super().call_binop(context, operator, left, right)


def _environment() -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals.clear()
    env.filters = {name: env.filters[name] for name in SAFE_FILTERS}
    return env


ENV = _environment()


class Template:
    """A compiled template and the variables it reads."""

    __slots__ = ("_tpl", "source", "variables")

    def __init__(self, source: str) -> None:
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateError(f"the template is longer than {MAX_SOURCE_CHARS} characters")
        try:
            ast = ENV.parse(source)
        except TemplateSyntaxError as err:
            raise TemplateError(f"template syntax error on line {err.lineno}: {err.message}") from None
        for node_type, what in _REFUSED.items():
            if next(ast.find_all(node_type), None) is not None:
                raise TemplateError(f"{what} are not allowed in templates")
        for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
            name = node.attr if isinstance(node, nodes.Getattr) else node.name if isinstance(node, nodes.Name) else (
                node.arg.value if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) else "")
            if name.startswith("_"):
                raise TemplateError(f"access to {name!r} is not allowed in templates")
        for node in ast.find_all(nodes.Filter):
            if node.name not in ENV.filters:
                raise TemplateError(f"filter {node.name!r} is not available; use one of: {', '.join(SAFE_FILTERS)}")
        self.variables = frozenset(meta.find_undeclared_variables(ast))
        self.source = source
        self._tpl = ENV.from_string(ast)

    def render(self, values: dict[str, Any], max_chars: int = MAX_OUTPUT_CHARS) -> str:
        out: list[str] = []
        size = 0
        try:
            for piece in self._tpl.generate(values):
                size += len(piece)
                if size > max_chars:
                    raise TemplateError(f"the rendered template is longer than {max_chars} characters")
                out.append(piece)
        except SecurityError as err:
            raise TemplateError(f"refused by the template sandbox: {err}") from None
        except UndefinedError as err:
            raise TemplateError(f"template variable error: {err}") from None
        except (TypeError, ValueError, ArithmeticError) as err:
            if isinstance(err, TemplateError):
                raise
            raise TemplateError(f"the template failed to render: {err}") from None
        return "".join(out)


def compile_template(source: str) -> Template:
    return Template(source)
