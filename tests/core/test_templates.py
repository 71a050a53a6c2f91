"""The prompt template sandbox: substitutions and conditions work; Python internals, method calls, globals,
loops, includes and output blow-ups are refused with a clear TemplateError (never a traceback)."""

from __future__ import annotations

import pytest

from proxy.core.templates import MAX_SOURCE_CHARS, Template, TemplateError


def test_substitutions_conditions_filters_and_item_access() -> None:
    t = Template("{{ who|upper }}{% if tone %} ({{ tone }}){% endif %}: {{ steps.a.output|truncate(8, leeway=0) }}")
    assert t.variables == frozenset({"who", "tone", "steps"})
    assert t.render({"who": "ann", "tone": "", "steps": {"a": {"output": "one two three"}}}) == "ANN: one..."


@pytest.mark.parametrize(("source", "why"), [
    ("{{ ''.__class__ }}", "__class__"),
    ("{{ x.__class__.__mro__ }}", "is not allowed"),
    ("{{ x['__globals__'] }}", "__globals__"),
    ("{{ _secret }}", "_secret"),
    ("{% for i in range(9) %}{% endfor %}", "loops"),
    ("{% macro m() %}{% endmacro %}", "macros"),
    ("{% include 'x' %}", "include"),
    ("{% extends 'x' %}", "extends"),
    ("{{ x|join(x) }}", "filter 'join'"),
    ("{{ oops", "syntax"),
    ("x" * (MAX_SOURCE_CHARS + 1), "longer"),
])
def test_refused_when_compiled(source: str, why: str) -> None:
    with pytest.raises(TemplateError) as err:
        Template(source)
    assert why in str(err.value)


@pytest.mark.parametrize(("source", "why"), [
    ("{{ x.upper() }}", "sandbox"),  # no attribute access at all, methods included
    ("{{ 'a' * 100000 }}", "repeating"),
    ("{{ 2 ** 1000 }}", "exponents"),
    ("{{ lipsum() }}", "undefined"),  # no globals
    ("{{ missing }}", "undefined"),
    ("{{ x|int + 'a' }}", "failed to render"),
])
def test_refused_when_rendered(source: str, why: str) -> None:
    with pytest.raises(TemplateError) as err:
        Template(source).render({"x": "abc"})
    assert why in str(err.value)


def test_output_is_bounded() -> None:
    t = Template("{{ x }}{{ x }}")
    assert t.render({"x": "ab"}, max_chars=4) == "abab"
    with pytest.raises(TemplateError, match="longer than 5"):
        t.render({"x": "abc"}, max_chars=5)
