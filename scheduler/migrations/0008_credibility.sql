-- Helio scheduler schema, version 8: credibility (decision 059). A runner's record gains the
-- scheduler's spot checks it passed and the leases it handed back; a batch may ask for a
-- target error, which its tasks' agreeing runners' credibility must meet; a replica keeps the
-- credibility its runner had when it leased; a task may wait for the scheduler's own run to
-- check it (a spot check, or a re-verification once a runner it rests on was found false),
-- and a result it corrected says when and why.

ALTER TABLE runners ADD COLUMN spot_checks BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runners ADD COLUMN returns BIGINT NOT NULL DEFAULT 0;
-- NULL: the quorum alone decides.
ALTER TABLE batches ADD COLUMN target_error DOUBLE PRECISION;
-- Thousandths of a nat of log-odds (credibility::Weight).
ALTER TABLE replicas ADD COLUMN weight BIGINT NOT NULL DEFAULT 0;
-- 0: none; 1: a spot check; 2: a re-verification.
ALTER TABLE tasks ADD COLUMN check_wanted BIGINT NOT NULL DEFAULT 0;
CREATE INDEX tasks_check_wanted ON tasks (id) WHERE check_wanted > 0;
-- When and why an accepted result was replaced by the scheduler's own run, if it was.
ALTER TABLE tasks ADD COLUMN corrected_ms BIGINT;
ALTER TABLE tasks ADD COLUMN correction TEXT;
-- The results a runner reported, found at once when it is flagged and what it vouched for
-- is re-verified (else a scan of every replica inside the flagging transaction).
CREATE INDEX replicas_runner_reported ON replicas (runner_id) WHERE state = 'reported';
