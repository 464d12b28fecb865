-- 0015: every published program version has its spend row, from its publication on.
--
-- The batch locks the program_spend rows before it draws its inbox arrival numbers, so that
-- batches of different partitions spend a budget in the order a replay applies them. A
-- version without a row yet would escape that lock at its first spend; publishing now
-- makes the row (ledger.program_store.publish), and this makes it for the versions
-- published before.
INSERT INTO program_spend (program_id, version, spent)
SELECT program_id, version, 0 FROM program_versions
ON CONFLICT (program_id, version) DO NOTHING;
