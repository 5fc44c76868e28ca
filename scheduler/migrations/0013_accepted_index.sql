-- Helio scheduler schema, version 13: tasks by when they were accepted, for the dashboard's
-- chart of tasks accepted per minute over the last hour (a range read, not a scan).
CREATE INDEX tasks_accepted ON tasks (accepted_ms) WHERE accepted_ms IS NOT NULL;
