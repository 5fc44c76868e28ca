-- Helio scheduler schema, version 6: health checks. A runner is cold until it passes one
-- (new, registered again, or back from offline); a cold runner's lease request gets a
-- health-check task instead of work, and the scheduler compares its digest with its own run.

-- 1 once the runner passed a health check since it last registered or came back online.
ALTER TABLE runners ADD COLUMN warm BIGINT NOT NULL DEFAULT 0;
-- Health checks failed in a row, and the time before which it gets no new one.
ALTER TABLE runners ADD COLUMN checks_failed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runners ADD COLUMN check_after_ms BIGINT NOT NULL DEFAULT 0;

-- Every check issued: state 'pending' until reported, then 'passed' or 'failed'; 'dropped'
-- when the runner registered again or went offline before reporting it.
CREATE TABLE health_checks (
    id          BIGINT PRIMARY KEY,
    runner_id   TEXT NOT NULL,
    seed        BIGINT NOT NULL,
    issued_ms   BIGINT NOT NULL,
    deadline_ms BIGINT NOT NULL,
    state       TEXT NOT NULL,
    digest      TEXT,
    expected    TEXT,
    finished_ms BIGINT
);
CREATE INDEX health_checks_runner ON health_checks (runner_id, state);
INSERT INTO counters (name, value) VALUES ('health_check', 0);
