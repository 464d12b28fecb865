"""The sample quarter's chain heads, pinned: a change of code that moves one record is seen.

The default sample traffic (``sample_data.generate()``, seed 2026: 50 partners, 2,000
sales, three month closes) runs through the pure runner with the example program as it
stood when the pin was taken (a frozen copy in ``tests/fixtures``, so that the example
program may grow with the language without moving the pin). Restructuring and speeding up
the engine, the runner or the ledger core must leave every record id, hash and chain head
as it is; a deliberate change of what records say is a new record format, and this pin is
then updated in the same commit, with the reason.

Pin history: moved once, deliberately, when the records of a period close came to be dated
at the last instant of the month they close (2026-01-31T23:59:59.999999Z, not
2026-02-01T00:00:00Z) and to name it (``closed_period``), so that "as of 31 January"
includes January's awards; the same records, ids and spend, other dates and hashes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import msgspec

from incentives.sample_data import generate
from processors.engine import compile_program
from processors.engine.runner import Books, run
from schemas.codec import Limits, Rejection, decode
from schemas.program_loader import load_program
from schemas.streams import MESSAGE_TYPES, Message, stream_of

PROGRAM = Path(__file__).resolve().parents[1] / "fixtures" / "pinned-program.yaml"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

MESSAGES = 2_853
RECORDS = 7_502
PARTNERS = 50
HEADS_SHA256 = "3eaa5c9994c2f2def827ea5126220902df5975bfac217272072dd59ea05df6a5"
RECORDS_SHA256 = "77a9ac44553f370610a748e70451fbee510dee4b7b14a8c3cceab22f53da8e2f"
SPENT = {("northwind-emea", 1): 235_956_510}


def _inputs() -> list[Message]:
    out: list[Message] = []
    for raw in generate():
        stream = stream_of(MESSAGE_TYPES[raw["type"]])
        message = decode(stream, msgspec.json.encode(raw), now=NOW, limits=Limits())
        assert not isinstance(message, Rejection), message
        out.append(message)
    return out


def test_the_sample_quarter_gives_the_pinned_records_and_chain_heads() -> None:
    inputs = _inputs()
    books = Books()
    outcome = run(inputs, books, [compile_program(load_program(PROGRAM).program)])

    heads = hashlib.sha256()
    for partner_id in sorted(books.heads):
        head = books.heads[partner_id]
        heads.update(f"{partner_id}:{head.seq}:{head.hash.hex()}\n".encode())
    records = hashlib.sha256()
    for record in outcome.records:
        records.update(f"{record.record_id}:{record.hash.hex()}\n".encode())

    assert (len(inputs), len(outcome.records), len(books.heads)) == (MESSAGES, RECORDS, PARTNERS)
    assert heads.hexdigest() == HEADS_SHA256
    assert records.hexdigest() == RECORDS_SHA256
    assert books.budgets == SPENT
