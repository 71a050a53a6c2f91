"""Compaction is deterministic and keeps meaning: whitespace outside code blocks, duplicate system text."""

from __future__ import annotations

from proxy.optimize.compact import compact_messages, compact_text


def test_whitespace_outside_code_blocks_only() -> None:
    text = "Hello   world  \n\n\n\n  - indented   item\t\tx  \n```py\ndef f():\n    x  =  1   \n\n\n\n    return x\n```\n\n\n\nend   "
    assert compact_text(text) == ("Hello world\n\n  - indented item x\n```py\ndef f():\n    x  =  1   \n\n\n\n"
                                  "    return x\n```\n\nend")
    assert compact_text(compact_text(text)) == compact_text(text)  # idempotent
    assert compact_text("~~~\na   b\n") == "~~~\na   b"  # an unclosed fence keeps the rest as it was
    assert compact_text("plain") == "plain"


def test_duplicate_system_text_dropped_and_parts_compacted() -> None:
    original = [{"role": "system", "content": "Be  nice. "}, {"role": "user", "content": "hi"},
                {"role": "system", "content": "Be nice."}, {"role": "developer", "content": "Other."},
                {"role": "user", "content": [{"type": "text", "text": "a   b  "}, {"type": "image_url"}]},
                {"role": "user", "content": "hi"}]
    out = compact_messages(original)
    assert out == [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi"},
                   {"role": "developer", "content": "Other."},
                   {"role": "user", "content": [{"type": "text", "text": "a b"}, {"type": "image_url"}]},
                   {"role": "user", "content": "hi"}]  # repeated user turns are conversation, not duplicates
    assert original[0]["content"] == "Be  nice. "  # the caller's messages are not mutated
