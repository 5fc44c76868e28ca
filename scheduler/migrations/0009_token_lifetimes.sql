-- Helio scheduler schema, version 9: a token may expire, and may be revoked. NULL: never
-- expires; not revoked.
ALTER TABLE tokens ADD COLUMN expires_ms BIGINT;
ALTER TABLE tokens ADD COLUMN revoked_ms BIGINT;
