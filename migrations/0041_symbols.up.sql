-- Definitions (functions, classes, methods, types) of each stored file, found by the chunker's parse, so a
-- definition can be looked up by its name or qualified name (`QuerySet.filter`). Rows belong to their file:
-- written in the same transaction as its chunks and deleted with it (ON DELETE CASCADE), so they follow every
-- edit and delete. `repo_id` and `path` are the file's, copied for filtering without a join; the file's
-- foreign key already ties them to the repository (a second key would only cost a check per row).
CREATE TABLE mahavishnu.symbols (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id        bigint NOT NULL REFERENCES mahavishnu.source_files (id) ON DELETE CASCADE,
    repo_id        bigint NOT NULL,
    path           text NOT NULL,
    name           text NOT NULL,
    qualified_name text NOT NULL,
    kind           text NOT NULL,
    language       text NOT NULL,
    start_line     integer NOT NULL CHECK (start_line >= 1),
    end_line       integer NOT NULL,
    CHECK (end_line >= start_line)
);
CREATE INDEX symbols_file_id_idx ON mahavishnu.symbols (file_id);
-- Exact and prefix lookups of names and qualified names (`LIKE 'abc%'` uses a pattern_ops index whatever the
-- database's collation). Ignoring case: a lookup as written is the same index condition with the exact
-- comparison rechecked on its few candidates, so indexes of the names as written would only cost every insert.
CREATE INDEX symbols_lower_name_idx ON mahavishnu.symbols (lower(name) text_pattern_ops);
CREATE INDEX symbols_lower_qualified_name_idx ON mahavishnu.symbols (lower(qualified_name) text_pattern_ops);

-- Each chunk's innermost enclosing definition, and the context header embedded with it (path, language,
-- symbol, signature): its content hash is the hash of header and content, so re-embedding a stored chunk
-- (another model) needs the header as it was.
ALTER TABLE mahavishnu.chunks ADD COLUMN symbol text, ADD COLUMN context text;

-- Symbols are part of memory snapshots like the chunks of the same files (see migration 0030).
CREATE TABLE mahavishnu.snap_symbols (
    id             bigint NOT NULL,
    row_xmin       xid NOT NULL,
    first_snapshot bigint NOT NULL,
    until_snapshot bigint,
    data           jsonb,
    PRIMARY KEY (id, first_snapshot)
);
CREATE TRIGGER snapshot_preserve_update AFTER UPDATE ON mahavishnu.symbols
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_symbols', 'id', '');
CREATE TRIGGER snapshot_preserve_delete AFTER DELETE ON mahavishnu.symbols
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_symbols', 'id', '');
CREATE TRIGGER snapshot_preserve_truncate BEFORE TRUNCATE ON mahavishnu.symbols
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_preserve_table('snap_symbols', 'id', '');
CREATE TRIGGER snapshot_touch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mahavishnu.symbols
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_touch();
