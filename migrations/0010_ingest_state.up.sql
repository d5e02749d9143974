-- Ingestion state: what lets an unchanged file go unread, a skipped file stay skipped without re-reading it,
-- and runs be observed and resumed.

-- `lstat` facts of the file as read, and the ingest configuration (chunker version and options) that chunked
-- it: equal facts and configuration mean the stored rows are still right, so the file is not read again.
ALTER TABLE mahavishnu.source_files
    ADD COLUMN mtime_ns bigint,
    ADD COLUMN ctime_ns bigint,
    ADD COLUMN inode    bigint,
    ADD COLUMN config   text;

-- Files judged by their content (binary, undecodable, secret, minified, refused by the embedder) are not
-- chunked; remembering the verdict with the same `lstat` facts spares reading them on every run. Only the
-- path and the reason are kept: never any content.
CREATE TABLE mahavishnu.skipped_files (
    repo_id    bigint NOT NULL REFERENCES mahavishnu.repositories (id) ON DELETE CASCADE,
    path       text NOT NULL,
    reason     text NOT NULL CHECK (reason ~ '^[a-z_]+$'),
    size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
    mtime_ns   bigint,
    ctime_ns   bigint,
    inode      bigint,
    config     text,
    space_id   integer REFERENCES mahavishnu.embedding_spaces (id) ON DELETE CASCADE,
    PRIMARY KEY (repo_id, path)
);

-- The embedding space a repository was last fully embedded in.
ALTER TABLE mahavishnu.repositories
    ADD COLUMN space_id integer REFERENCES mahavishnu.embedding_spaces (id) ON DELETE SET NULL;

-- One row per ingest: progress while it runs, counts when it ends. A run killed mid-way stays `running` until
-- the next run of the repository marks it `abandoned`; its committed file batches are kept and resumed.
CREATE TABLE mahavishnu.ingest_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo_id      bigint NOT NULL REFERENCES mahavishnu.repositories (id) ON DELETE CASCADE,
    status       text NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned')),
    commit       text,
    space_id     integer REFERENCES mahavishnu.embedding_spaces (id) ON DELETE SET NULL,
    files_total  integer NOT NULL DEFAULT 0 CHECK (files_total >= 0),
    files_done   integer NOT NULL DEFAULT 0 CHECK (files_done >= 0),
    stats        jsonb,
    error        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX ingest_runs_repo_started_idx ON mahavishnu.ingest_runs (repo_id, started_at DESC);
