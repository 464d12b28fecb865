"""The ledger's PostgreSQL store (asyncpg): the I/O half of ledger.core and ledger.verify.

- `append` writes a batch of sealed records and their postings with COPY, inside the
  caller's transaction, and moves each partner's chain head in ``partner_state`` with a
  compare-and-set, so a stale writer fails instead of forking a chain.
- `load_heads` and `existing_record_ids` give a writer what ledger.core.append needs.
- `take_checkpoint` and `load_checkpoints` pin and read the heads of every chain.
- `stream_records` / `stream_chunks` read the ledger in verifier order, rebuilding each
  `Record` exactly so its hash recomputes; `verify_ledger` runs ledger.verify over it.
- `balances` sums postings in SQL, as ledger.balances.fold does in Python.
- `partners` (a submodule): every other statement of the ledger stage on ``partner_state``
  (the engine's state, next due time), ``partner_orders`` and ``program_spend``.
- `partner_records` / `partner_movements`: one partner's records over a span of event time,
  for statements and point-in-time balances (ledger/store/history.py).

Tables and privileges come from ledger/migrations/0002_ledger.sql.
"""

from ledger.store.checkpoints import CheckpointError, load_checkpoints, take_checkpoint
from ledger.store.errors import ChainConflict, StoreError
from ledger.store.history import Moved, partner_exists, partner_movements, partner_records
from ledger.store.read import (
    CHUNK_DEFAULT,
    UndecodableExplanation,
    balances,
    stream_chunks,
    stream_records,
    verify_ledger,
)
from ledger.store.write import append, existing_record_ids, load_heads

__all__ = [
    "CHUNK_DEFAULT",
    "ChainConflict",
    "CheckpointError",
    "Moved",
    "StoreError",
    "UndecodableExplanation",
    "append",
    "balances",
    "existing_record_ids",
    "load_checkpoints",
    "load_heads",
    "partner_exists",
    "partner_movements",
    "partner_records",
    "stream_chunks",
    "stream_records",
    "take_checkpoint",
    "verify_ledger",
]
