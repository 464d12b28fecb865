-- 0017: the intake's table of sold order lines is named for what it holds.
--
-- Two stores speak of orders, and they are not one book told twice:
--   sold_lines      (intake, processors/intake/store.py) what each line of an accepted sale
--                   sold and what reversals left of it: quantities and net amounts, kept
--                   for as long as a reversal may arrive, so that a reversal of more than
--                   was sold, or of an unknown line, is dead-lettered at intake, before
--                   it reaches the inbox and the engine;
--   partner_orders  (engine state, ledger/store/partners.py) what each line earned under
--                   each program's rules, so that a reversal claws back exactly that;
--                   pruned when the program's clawback window has passed, and rebuilt by
--                   a replay from the inbox.
-- Named "orders", the first read as if it were the second. Grants, indexes and constraints
-- follow a renamed table.

ALTER TABLE orders RENAME TO sold_lines;
ALTER INDEX orders_pkey RENAME TO sold_lines_pkey;
