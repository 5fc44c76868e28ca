-- Helio scheduler schema, version 10: owner accounts. An owner name is held by one owner key
-- (an Ed25519 public key, hex) from the first runner registered under it; `folded` (the name
-- in lower case) is unique, so that no two owners differ by case alone. `admitted`: open or
-- invite; `address`: where the first registration came from (new owners are limited per
-- address and day).
CREATE TABLE owners (
    name TEXT PRIMARY KEY,
    folded TEXT NOT NULL UNIQUE,
    public_key TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    admitted TEXT NOT NULL,
    address TEXT NOT NULL
);
CREATE INDEX owners_by_address ON owners (address, created_ms);
-- An owner's runners, for the owner list and for claiming a name from before owner keys,
-- without reading every runner.
CREATE INDEX runners_by_owner ON runners (owner);
