-- Helio scheduler schema, version 11: submitters steer their batches, and share the grid.
-- A batch is active, paused (no new leases; those out run on) or cancelled (its tasks not yet
-- accepted end: no more leases, results or credits). `priority` orders a submitter's own
-- batches; past `deadline_ms` the scheduler cancels what is left. `ended_why` says who or
-- what cancelled it. `cancelled` counts its cancelled tasks and `leased` its leases out, kept
-- as they change like the counts of migrations 5 and 7 (fair share weighs submitters by
-- leases out).
ALTER TABLE batches ADD COLUMN state TEXT NOT NULL DEFAULT 'active';
ALTER TABLE batches ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN deadline_ms BIGINT;
ALTER TABLE batches ADD COLUMN ended_ms BIGINT;
ALTER TABLE batches ADD COLUMN ended_why TEXT;
ALTER TABLE batches ADD COLUMN cancelled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN leased BIGINT NOT NULL DEFAULT 0;
UPDATE batches SET leased = (SELECT COUNT(*) FROM replicas r JOIN tasks t ON t.id = r.task_id
                             WHERE t.batch_id = batches.id AND r.state = 'leased');
-- The batches not yet finished, by submitter: the queues leasing serves, and a submitter's
-- tasks against its quota, read without a look at finished batches.
CREATE INDEX batches_unfinished ON batches (submitted_by, created_ms)
    WHERE accepted_ok + accepted_failed + cancelled < tasks;
-- A batch's tasks that want a replica, lowest id first: each queue's part of a lease pool.
CREATE INDEX tasks_batch_wanted ON tasks (batch_id, id) WHERE wanted > 0;
-- What an operator grants a submitter (by its tokens' name): its weight in fair share, the
-- most leases it may have out at once, the most unfinished tasks it may have submitted.
-- NULL: no limit. A submitter without a row has share 1 and no limits.
CREATE TABLE submitters (
    name        TEXT PRIMARY KEY,
    share       BIGINT NOT NULL DEFAULT 1,
    max_running BIGINT,
    max_tasks   BIGINT
);
