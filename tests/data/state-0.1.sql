-- The state database's tables as digest 0.1 (before Alembic) created them: tests build old databases from this.
CREATE TABLE IF NOT EXISTS issues (
    id          INTEGER PRIMARY KEY,
    edition     TEXT NOT NULL,
    issue_date  TEXT NOT NULL,            -- YYYY-MM-DD in the edition's zone
    send_time   TEXT NOT NULL,            -- ISO 8601 with offset
    created_at  TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open',   -- open | paused | done
    note        TEXT,
    UNIQUE (edition, issue_date)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id          INTEGER PRIMARY KEY,
    issue_id    INTEGER NOT NULL REFERENCES issues(id),
    email       TEXT NOT NULL,
    name        TEXT NOT NULL,
    key         TEXT NOT NULL,            -- casefolded address
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL,                     -- epoch seconds before which a deferred copy waits
    message_id  TEXT,
    last_code   INTEGER,
    last_text   TEXT,
    updated_at  TEXT NOT NULL,
    failure     TEXT,                     -- why a failed copy failed: outcomes.FAILURE_CLASSES
    UNIQUE (issue_id, key)
);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries(issue_id, state);
CREATE TABLE IF NOT EXISTS missed_sends (
    edition     TEXT NOT NULL,
    issue_date  TEXT NOT NULL,
    send_time   TEXT NOT NULL,
    noticed_at  TEXT NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (edition, issue_date)
);
CREATE TABLE IF NOT EXISTS marks (
    name        TEXT PRIMARY KEY,         -- e.g. 'scheduler.last_seen'
    value       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name        TEXT PRIMARY KEY,         -- e.g. 'scheduler'
    owner       TEXT NOT NULL,            -- host:pid
    expires_at  REAL NOT NULL             -- epoch seconds; renewed while the owner lives
);
CREATE TABLE IF NOT EXISTS suppressions (
    key         TEXT NOT NULL,            -- casefolded address
    edition     TEXT NOT NULL,            -- a slug, or '*' for every edition
    reason      TEXT NOT NULL,            -- unsubscribed | bounced | complaint | ...
    detail      TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (key, edition)
);
CREATE TABLE IF NOT EXISTS issue_stories (
    issue_id    INTEGER NOT NULL REFERENCES issues(id),
    position    INTEGER NOT NULL,
    story_id    TEXT NOT NULL,
    PRIMARY KEY (issue_id, position),
    UNIQUE (issue_id, story_id)
);
CREATE INDEX IF NOT EXISTS issue_stories_story ON issue_stories(story_id);
CREATE TABLE IF NOT EXISTS left_out_rows (  -- subscriber rows that could not be used when the audience was frozen
    issue_id    INTEGER NOT NULL REFERENCES issues(id),
    line        INTEGER NOT NULL,         -- line of subscribers.csv at the time
    key         TEXT,                     -- casefolded address, when it could be read
    reason      TEXT NOT NULL,
    added_at    TEXT,                     -- when the reader, row fixed, was added to the issue
    PRIMARY KEY (issue_id, line)
);
CREATE TABLE IF NOT EXISTS archive_pages (   -- added later: an older database gains it when opened
    issue_id    INTEGER PRIMARY KEY REFERENCES issues(id),
    html        TEXT NOT NULL,            -- the public "view in browser" page, as the issue was sent
    stored_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS issue_notes (     -- added later: an older database gains it when opened
    issue_id    INTEGER PRIMARY KEY REFERENCES issues(id),
    source      TEXT NOT NULL,            -- the note file it was read from
    markdown    TEXT NOT NULL             -- its text when the issue was created: every copy shows this
);
