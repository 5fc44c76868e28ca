-- Helio scheduler schema, version 12: each task's `limits.memory_bytes`, which leasing
-- checks against a runner's memory per slot (a runner takes a task only if every one of its
-- slots could run one at once). 0: not recorded (tasks submitted before), fits any runner.
ALTER TABLE tasks ADD COLUMN memory_bytes BIGINT NOT NULL DEFAULT 0;
