//! The catalog's tables. A new version adds a migration step in `Catalog::migrate`.

pub const SCHEMA_VERSION: i64 = 1;

pub const SCHEMA_V1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    state TEXT NOT NULL,            -- running | good | partial | failed | interrupted
    snapshot_id INTEGER,
    entries INTEGER NOT NULL DEFAULT 0,
    files INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    new_files INTEGER NOT NULL DEFAULT 0,
    new_bytes INTEGER NOT NULL DEFAULT 0,
    linked INTEGER NOT NULL DEFAULT 0,
    resumed INTEGER NOT NULL DEFAULT 0,
    skipped_special INTEGER NOT NULL DEFAULT 0,
    excluded INTEGER NOT NULL DEFAULT 0,
    warnings INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    message TEXT
);
CREATE INDEX runs_host ON runs(host, id);
CREATE TABLE problems (
    run_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    action TEXT NOT NULL,
    message TEXT NOT NULL,
    severity TEXT NOT NULL
);
CREATE INDEX problems_run ON problems(run_id);
CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    name TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    state TEXT NOT NULL,            -- publishing | published
    result TEXT NOT NULL,           -- good | partial
    created_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    entries INTEGER NOT NULL,
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    new_files INTEGER NOT NULL,
    new_bytes INTEGER NOT NULL,
    UNIQUE (host, name)
);
-- Sorted by path per snapshot, so the next run can merge-join it with a listing.
CREATE TABLE entries (
    snapshot_id INTEGER NOT NULL,
    path BLOB NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    target BLOB,
    dirty INTEGER NOT NULL DEFAULT 0, -- content may not match the metadata (changed while read)
    PRIMARY KEY (snapshot_id, path)
) WITHOUT ROWID;
";
