"""Usage ledger, virtual keys, admin audit log and budget alerts (SQLite or PostgreSQL)."""

from .keys import DuplicateKeyError
from .rows import UsageRow
from .store import GROUP_BYS, LedgerStore
from .writer import LedgerWriter

__all__ = ["GROUP_BYS", "DuplicateKeyError", "LedgerStore", "LedgerWriter", "UsageRow"]
