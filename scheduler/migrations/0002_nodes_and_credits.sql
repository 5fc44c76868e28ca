-- Helio scheduler schema, version 2: kinds of ledger entries (a runner's task credit, the
-- cooperative fund's share of it, credit for time online, payouts to owners); what runners
-- say of themselves (location, green energy); their online state and time online; and an
-- audit log of what each runner did.

CREATE TABLE ledger_v2 (
    seq           BIGINT PRIMARY KEY,
    kind          TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    task          TEXT NOT NULL,
    runner_id     TEXT NOT NULL,
    owner         TEXT NOT NULL,
    digest        TEXT NOT NULL,
    fuel          BIGINT NOT NULL,
    micro_credits BIGINT NOT NULL,
    prev          TEXT NOT NULL,
    hash          TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    UNIQUE (kind, batch_id, task, runner_id)
);
INSERT INTO ledger_v2 (seq, kind, batch_id, task, runner_id, owner, digest, fuel,
                       micro_credits, prev, hash, created_ms)
SELECT seq, 'task', batch_id, task, runner_id, owner, digest, fuel, micro_credits, prev, hash,
       created_ms
FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_v2 RENAME TO ledger;
CREATE INDEX ledger_owner ON ledger (owner);
CREATE INDEX ledger_runner ON ledger (runner_id);
CREATE INDEX ledger_batch ON ledger (batch_id, task);

ALTER TABLE runners ADD COLUMN location TEXT NOT NULL DEFAULT '';
ALTER TABLE runners ADD COLUMN green_energy DOUBLE PRECISION;
-- 1 while the runner is heard from within the offline limit; the expiry loop sets 0.
ALTER TABLE runners ADD COLUMN online BIGINT NOT NULL DEFAULT 1;
-- Milliseconds online (between requests no further apart than the offline limit), and how
-- many of them the ledger has credited.
ALTER TABLE runners ADD COLUMN uptime_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runners ADD COLUMN uptime_credited_ms BIGINT NOT NULL DEFAULT 0;

-- What each runner did, for operators: registered, online, offline, flagged, missed a
-- deadline, handed leases back, credited for uptime.
CREATE TABLE runner_events (
    runner_id TEXT NOT NULL,
    at_ms     BIGINT NOT NULL,
    event     TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX runner_events_runner ON runner_events (runner_id, at_ms);
