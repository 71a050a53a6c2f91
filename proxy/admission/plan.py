"""What admission decides once per (key, alias) and what it reserves per call: its plan and its ticket."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from proxy.admission.budgets import BudgetLine
from proxy.admission.quotas import Window
from proxy.config.base import Budget, Limits
from proxy.providers.settings import Price

if TYPE_CHECKING:
    from proxy.core.identity import KeyInfo


class Prices(Protocol):
    """What admission needs of metering's PriceTable (passed in by the composition root)."""

    def lookup(self, provider: str, model: str) -> Price | None: ...


@dataclass(slots=True)
class Plan:
    """What applies to one (key, alias): windows, budgets, the likely provider and its price. Cached; a key
    edited through the admin API carries new Limits/Budget objects, which invalidates it."""

    limits: Limits | None
    budget: Budget | None
    team: str | None
    user_limits: Limits | None
    user_budget: Budget | None
    windows: tuple[Window, ...]
    has_tokens: bool
    provider: str
    price: Price | None
    budgets: tuple[tuple[str, str, str, Budget], ...]  # (scope, id, label, budget)
    lines: list[BudgetLine] = field(default_factory=list)
    lines_until: float = 0.0  # when the first of the lines' periods ends
    seeded: bool = False  # the current lines' spend was loaded from the ledger
    token_windows: tuple[int, ...] = ()  # indexes of the token windows


@dataclass(slots=True)
class Ticket:
    """What admission reserved for a call, for the finish hook to settle."""

    key: KeyInfo
    plan: Plan
    amounts: list[int]
    lines: list[BudgetLine]
    estimate: float  # USD reserved on each budget line
