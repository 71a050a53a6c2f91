"""Usage ledger, virtual keys, admin audit log and budget alerts (SQLite or PostgreSQL)."""

from proxy.ledger.keys import DuplicateKeyError
from proxy.ledger.rows import UsageRow
from proxy.ledger.store import GROUP_BYS, LedgerStore
from proxy.ledger.users import DuplicateEmailError
from proxy.ledger.writer import LedgerWriter

__all__ = ["GROUP_BYS", "DuplicateEmailError", "DuplicateKeyError", "LedgerStore", "LedgerWriter", "UsageRow"]
