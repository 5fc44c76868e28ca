-- Helio scheduler schema, version 1. Written once for SQLite and PostgreSQL: only types and
-- statements both understand. Times are milliseconds since the Unix epoch; hashes and keys
-- are lowercase hex.

CREATE TABLE runners (
    id               TEXT PRIMARY KEY,
    public_key       TEXT NOT NULL UNIQUE,
    owner            TEXT NOT NULL,
    tier             BIGINT NOT NULL,
    slots            BIGINT NOT NULL,
    cores            BIGINT NOT NULL,
    memory_bytes     BIGINT NOT NULL,
    fuel_per_second  BIGINT NOT NULL,
    profile          TEXT NOT NULL,
    registered_ms    BIGINT NOT NULL,
    last_seen_ms     BIGINT NOT NULL,
    agreements       BIGINT NOT NULL DEFAULT 0,
    disagreements    BIGINT NOT NULL DEFAULT 0,
    missed_deadlines BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE tokens (
    hash       TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE batches (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    replicas     BIGINT NOT NULL,
    quorum       BIGINT NOT NULL,
    max_replicas BIGINT NOT NULL,
    credit_rate  DOUBLE PRECISION NOT NULL,
    tasks        BIGINT NOT NULL
);

-- phase: open (replicas wanted or out), deciding (the scheduler runs it itself), accepted.
CREATE TABLE tasks (
    id             BIGINT PRIMARY KEY,
    batch_id       TEXT NOT NULL REFERENCES batches (id),
    idx            BIGINT NOT NULL,
    name           TEXT NOT NULL,
    manifest       TEXT NOT NULL,
    tier           BIGINT NOT NULL,
    quorum         BIGINT NOT NULL,
    wall_seconds   BIGINT NOT NULL,
    phase          TEXT NOT NULL,
    wanted         BIGINT NOT NULL,
    digest         TEXT,
    by_scheduler   BIGINT NOT NULL DEFAULT 0,
    result         TEXT,
    succeeded      BIGINT NOT NULL DEFAULT 0,
    accepted_ms    BIGINT,
    outputs_stored BIGINT NOT NULL DEFAULT 0,
    UNIQUE (batch_id, name)
);
CREATE INDEX tasks_wanted ON tasks (id) WHERE wanted > 0;
CREATE INDEX tasks_batch ON tasks (batch_id, idx);
CREATE INDEX tasks_deciding ON tasks (id) WHERE phase = 'deciding';
CREATE INDEX tasks_outputs_missing ON tasks (accepted_ms) WHERE phase = 'accepted' AND outputs_stored = 0;

-- state: leased, reported, expired, returned. One replica per runner and per owner.
CREATE TABLE replicas (
    task_id     BIGINT NOT NULL REFERENCES tasks (id),
    runner_id   TEXT NOT NULL REFERENCES runners (id),
    owner       TEXT NOT NULL,
    lease_seq   BIGINT NOT NULL,
    state       TEXT NOT NULL,
    deadline_ms BIGINT NOT NULL,
    digest      TEXT,
    report_seq  BIGINT,
    report      TEXT,
    signature   TEXT,
    reported_ms BIGINT,
    PRIMARY KEY (task_id, runner_id),
    UNIQUE (task_id, owner)
);
CREATE INDEX replicas_leased ON replicas (deadline_ms) WHERE state = 'leased';
CREATE INDEX replicas_runner_leased ON replicas (runner_id) WHERE state = 'leased';

-- The credit ledger: append-only, each entry chained to the one before by its hash.
CREATE TABLE ledger (
    seq           BIGINT PRIMARY KEY,
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
    UNIQUE (batch_id, task, runner_id)
);
CREATE INDEX ledger_owner ON ledger (owner);
CREATE INDEX ledger_runner ON ledger (runner_id);

-- The ledger's anchor: its length and head hash, kept apart so that cutting entries off
-- its end shows.
CREATE TABLE ledger_head (
    id   BIGINT PRIMARY KEY,
    len  BIGINT NOT NULL,
    head TEXT NOT NULL
);
INSERT INTO ledger_head (id, len, head)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('task', 0);

-- Blobs an accepted task's result names (outputs, standard output) that the blob store
-- does not hold yet: what runners may upload.
CREATE TABLE wanted_blobs (
    blake3  TEXT NOT NULL,
    task_id BIGINT NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (blake3, task_id)
);
CREATE INDEX wanted_blobs_task ON wanted_blobs (task_id);
