-- Helio scheduler schema, version 5: a batch's finished tasks and credits counted as they
-- happen. The transaction that accepts a task adds it to its batch's count, and the one that
-- appends ledger entries adds their credits, so that a status read counts only the tasks
-- still open instead of every task and every ledger entry of the batch.
ALTER TABLE batches ADD COLUMN accepted_ok BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN accepted_failed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN micro_credits BIGINT NOT NULL DEFAULT 0;
UPDATE batches SET
    accepted_ok = (SELECT COUNT(*) FROM tasks t
                   WHERE t.batch_id = batches.id AND t.phase = 'accepted' AND t.succeeded = 1),
    accepted_failed = (SELECT COUNT(*) FROM tasks t
                       WHERE t.batch_id = batches.id AND t.phase = 'accepted' AND t.succeeded = 0),
    micro_credits = (SELECT CAST(COALESCE(SUM(l.micro_credits), 0) AS BIGINT) FROM ledger l
                     WHERE l.batch_id = batches.id);
