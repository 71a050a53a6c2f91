"""Deterministic, meaning-preserving prompt compaction.

Outside fenced code blocks (```...``` or ~~~...~~~, kept byte for byte): trailing whitespace on each line is
trimmed, runs of spaces and tabs inside a line become one space (indentation at the start of a line is kept:
it carries structure in lists, YAML, quoted code), and more than one blank line in a row becomes one; the text
is stripped at both ends. A system (or developer) message whose text repeats an earlier one exactly is dropped.
"""

from __future__ import annotations

import re
from typing import Any

_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_INNER_RUN = re.compile(r"(?<=\S)[ \t]{2,}")
_SYSTEM = frozenset(("system", "developer"))


def compact_text(text: str) -> str:
    if not text:
        return text
    out: list[str] = []
    fence: str | None = None
    blank = False  # the previous line kept (outside a code block) was blank
    for line in text.split("\n"):
        m = _FENCE.match(line)
        if fence is not None:  # inside a code block: untouched, until its closing fence
            out.append(line)
            if m and m.group(1) == fence:
                fence = None
            continue
        if m:
            fence = m.group(1)
            out.append(line.rstrip())
            blank = False
            continue
        line = _INNER_RUN.sub(" ", line.rstrip())
        if not line:
            if blank:
                continue  # one blank line is enough
            blank = True
        else:
            blank = False
        out.append(line)
    return "\n".join(out).strip()


def compact_messages(messages: list[Any]) -> list[Any]:
    """A new list of messages, compacted (the caller's list and dicts are left as they were)."""
    out: list[Any] = []
    seen_system: set[str] = set()
    for msg in messages:
        if not isinstance(msg, dict):
            out.append(msg)
            continue
        content = msg.get("content")
        if isinstance(content, str):
            new = compact_text(content)
            if msg.get("role") in _SYSTEM:
                if new in seen_system:
                    continue  # the exact same instructions again
                seen_system.add(new)
            out.append(msg if new == content else {**msg, "content": new})
        elif isinstance(content, list):
            parts = [{**p, "text": compact_text(p["text"])} if isinstance(p, dict) and p.get("type") == "text"
                     and isinstance(p.get("text"), str) else p for p in content]
            out.append({**msg, "content": parts})
        else:
            out.append(msg)
    return out
