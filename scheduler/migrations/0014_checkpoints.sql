-- Helio scheduler schema, version 14: the last checkpoint each replica of a task that
-- checkpoints handed in (the bytes are a blob, by their BLAKE3). When the replica's lease
-- ends without a result, the task's next lease goes on from it (`taken_by`: that runner),
-- so each checkpoint continues one replica's work and no other's.
CREATE TABLE checkpoints (
    task_id   BIGINT NOT NULL REFERENCES tasks (id),
    runner_id TEXT NOT NULL,
    blake3    TEXT NOT NULL,
    saved     BIGINT NOT NULL,
    fuel_used BIGINT NOT NULL,
    saved_ms  BIGINT NOT NULL,
    taken_by  TEXT,
    PRIMARY KEY (task_id, runner_id)
);
