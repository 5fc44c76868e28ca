-- Helio scheduler schema, version 3: what the dashboard shows without reading reports.
-- A task is disputed once two of its runners reported different digests (set in the
-- transaction that records the second digest); a reported replica keeps the run's wall time,
-- so that the compute time volunteers gave can be summed.
ALTER TABLE tasks ADD COLUMN disputed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE replicas ADD COLUMN wall_ms BIGINT;
