"""Prompt optimisation, opt-in per key, alias or agent (`optimize: {mode: compact | rewrite}`): compact.py is the
deterministic, meaning-preserving compaction; stage.py applies the policy before admission (so quotas and budgets
see the prompt that is sent) and records what it saved; rewrite mode asks a cheap alias to shorten long prompts
(through a callable the composition root gives it), cached by prompt hash, falling back to the original."""

from proxy.optimize.compact import compact_messages, compact_text
from proxy.optimize.stage import Optimizer

__all__ = ["Optimizer", "compact_messages", "compact_text"]
