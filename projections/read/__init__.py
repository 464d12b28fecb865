"""The finance read side's queries: typed answers (`projections.read.types`) over the
projections and the ledger, shared by the HTTP API and the command line.

- `balances`: a partner's balances now or as of any moment; `statement`: opening and
  closing balance per asset and every line in between; `records`: ledger lines with their
  explanations (projections/read/balances.py).
- `tiers`, `tier_history` (projections/read/tiers.py).
- `leaderboard`, `teams` (projections/read/boards.py).
- `spend`, `partners`, `partner`, `refusals` (projections/read/finance.py).
- `dead_letters`, `reconciliation` (projections/read/intake.py).

Every function takes a connection; the caller opens it read-only (`projections.read.db`).
Moments are exclusive UTC bounds as `projections.asof` makes them.
"""

from projections.read.balances import UnknownPartner, balances, records, statement
from projections.read.boards import METRICS, leaderboard, teams
from projections.read.catalog import Catalog
from projections.read.cursor import CursorError
from projections.read.finance import partner, partners, refusals, spend
from projections.read.intake import dead_letters, reconciliation
from projections.read.tiers import history as tier_history
from projections.read.tiers import tiers

__all__ = [
    "METRICS", "Catalog", "CursorError", "UnknownPartner", "balances", "dead_letters",
    "leaderboard", "partner", "partners", "reconciliation", "records", "refusals", "spend",
    "statement", "teams", "tier_history", "tiers",
]
