-- Helio scheduler schema, version 7: a batch's running and deciding tasks counted as they
-- change. The transaction that leases, reports, expires, hands back or decides a task moves it
-- between its batch's counts, so that a status read is a read of one row, whatever the size
-- of the batch, instead of a look at every open task's replicas.
ALTER TABLE batches ADD COLUMN running BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN deciding BIGINT NOT NULL DEFAULT 0;
UPDATE batches SET
    running = (SELECT COUNT(*) FROM tasks t
               WHERE t.batch_id = batches.id AND t.phase = 'open'
               AND EXISTS (SELECT 1 FROM replicas r
                           WHERE r.task_id = t.id AND r.state IN ('leased', 'reported'))),
    deciding = (SELECT COUNT(*) FROM tasks t
                WHERE t.batch_id = batches.id AND t.phase = 'deciding');
