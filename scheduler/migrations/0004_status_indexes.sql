-- Helio scheduler schema, version 4: a batch's status read from indexes alone. A status
-- counts the batch's tasks by phase and outcome and sums its ledger entries; with these
-- covering indexes neither reads a table row, so polling a 100,000-task batch no longer
-- takes a large share of the database from the runners.
CREATE INDEX tasks_batch_status ON tasks (batch_id, phase, succeeded, outputs_stored);
CREATE INDEX ledger_batch_credits ON ledger (batch_id, micro_credits);
