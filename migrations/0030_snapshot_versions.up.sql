-- Memory snapshots as shared row versions (see mahavishnu_assets/memory/snapshots.py for the design).
--
-- One version table per snapshotted table, keyed like it. A version row says "the live row with this key, as
-- it was when its xmin was `row_xmin`, belongs to snapshots first_snapshot <= id < until_snapshot". While
-- `data` is NULL the row's values are still the live row's (it has not changed since); the triggers below copy
-- them into `data` just before a live row is updated, deleted or truncated, so a snapshot costs one narrow
-- row per new or changed live row and never copies unchanged data.

ALTER TABLE mahavishnu.memory_snapshots
    ADD COLUMN restored_at timestamptz,
    ADD COLUMN partition_key text;
CREATE INDEX memory_snapshots_name_idx ON mahavishnu.memory_snapshots (name);

-- Set (non-transactionally) to the xid of the newest snapshot transaction, so a REPEATABLE READ or
-- SERIALIZABLE writer can tell that a snapshot committed after its own snapshot was taken.
CREATE SEQUENCE mahavishnu.snapshot_clock AS bigint MINVALUE 0 START 0;

CREATE TABLE mahavishnu.snap_repositories (
    id             bigint NOT NULL,
    row_xmin       xid NOT NULL,
    first_snapshot bigint NOT NULL,
    until_snapshot bigint,
    data           jsonb,
    PRIMARY KEY (id, first_snapshot)
);

CREATE TABLE mahavishnu.snap_source_files (
    id             bigint NOT NULL,
    row_xmin       xid NOT NULL,
    first_snapshot bigint NOT NULL,
    until_snapshot bigint,
    data           jsonb,
    PRIMARY KEY (id, first_snapshot)
);

CREATE TABLE mahavishnu.snap_chunks (
    id             bigint NOT NULL,
    row_xmin       xid NOT NULL,
    first_snapshot bigint NOT NULL,
    until_snapshot bigint,
    data           jsonb,
    PRIMARY KEY (id, first_snapshot)
);

CREATE TABLE mahavishnu.snap_embedding_spaces (
    id             integer NOT NULL,
    row_xmin       xid NOT NULL,
    first_snapshot bigint NOT NULL,
    until_snapshot bigint,
    data           jsonb,
    PRIMARY KEY (id, first_snapshot)
);

-- Vectors keep their binary type: no text round trip when an embedding is preserved or restored.
CREATE TABLE mahavishnu.snap_embeddings (
    space_id       integer NOT NULL,
    content_hash   bytea NOT NULL,
    row_xmin       xid NOT NULL,
    first_snapshot bigint NOT NULL,
    until_snapshot bigint,
    data           jsonb,
    embedding      vector,
    PRIMARY KEY (space_id, content_hash, first_snapshot)
);

CREATE TABLE mahavishnu.snap_memories (
    id             bigint NOT NULL,
    row_xmin       xid NOT NULL,
    first_snapshot bigint NOT NULL,
    until_snapshot bigint,
    data           jsonb,
    embedding      vector,
    PRIMARY KEY (id, first_snapshot)
);

-- Copy the old values of updated or deleted live rows into the versions that still point at them.
-- Arguments: version table, its key columns (comma separated), columns stored typed (comma separated or '').
CREATE FUNCTION mahavishnu.snapshot_preserve_rows() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    store text := TG_ARGV[0];
    key_cols text[] := string_to_array(TG_ARGV[1], ',');
    typed_cols text[] := string_to_array(TG_ARGV[2], ',');
    drop_cols text[];
    clock bigint;
    typed_set text := '';
    key_match text;
BEGIN
    -- Shared against a snapshot being taken (which holds this lock exclusively from before its transaction
    -- snapshot until after it commits), so a version recorded by it is always visible below.
    PERFORM pg_advisory_xact_lock_shared(120260534390273);
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO clock FROM mahavishnu.snapshot_clock;
        IF clock > 0
           AND pg_xact_status(clock::text::xid8) IS DISTINCT FROM 'aborted'
           AND NOT pg_visible_in_snapshot(clock::text::xid8, pg_current_snapshot()) THEN
            RAISE EXCEPTION 'a memory snapshot was taken after this transaction started'
                USING ERRCODE = 'serialization_failure', HINT = 'Retry the transaction.';
        END IF;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM mahavishnu.memory_snapshots) THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(array_agg(attname::text), '{}') INTO drop_cols
      FROM pg_attribute
     WHERE attrelid = TG_RELID AND attnum > 0 AND NOT attisdropped AND attgenerated <> '';
    drop_cols := drop_cols || typed_cols;
    SELECT string_agg(format(', %1$I = o.%1$I', c), '') INTO typed_set FROM unnest(typed_cols) AS c;
    SELECT string_agg(format('s.%1$I = o.%1$I', c), ' AND ') INTO key_match FROM unnest(key_cols) AS c;
    EXECUTE format(
        'UPDATE mahavishnu.%I s SET data = to_jsonb(o) - $1::text[]%s FROM old_rows o WHERE s.data IS NULL AND %s',
        store, coalesce(typed_set, ''), key_match
    ) USING drop_cols;
    RETURN NULL;
END
$fn$;

-- TRUNCATE fires no row triggers: preserve every pending version of the table from the live rows first.
CREATE FUNCTION mahavishnu.snapshot_preserve_table() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    store text := TG_ARGV[0];
    key_cols text[] := string_to_array(TG_ARGV[1], ',');
    typed_cols text[] := string_to_array(TG_ARGV[2], ',');
    drop_cols text[];
    typed_set text := '';
    key_match text;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(120260534390273);
    IF NOT EXISTS (SELECT 1 FROM mahavishnu.memory_snapshots) THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(array_agg(attname::text), '{}') INTO drop_cols
      FROM pg_attribute
     WHERE attrelid = TG_RELID AND attnum > 0 AND NOT attisdropped AND attgenerated <> '';
    drop_cols := drop_cols || typed_cols;
    SELECT string_agg(format(', %1$I = o.%1$I', c), '') INTO typed_set FROM unnest(typed_cols) AS c;
    SELECT string_agg(format('s.%1$I = o.%1$I', c), ' AND ') INTO key_match FROM unnest(key_cols) AS c;
    EXECUTE format(
        'UPDATE mahavishnu.%I s SET data = to_jsonb(o) - $1::text[]%s FROM %s o WHERE s.data IS NULL AND %s',
        store, coalesce(typed_set, ''), TG_RELID::regclass, key_match
    ) USING drop_cols;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER snapshot_preserve_update AFTER UPDATE ON mahavishnu.repositories
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_repositories', 'id', '');
CREATE TRIGGER snapshot_preserve_delete AFTER DELETE ON mahavishnu.repositories
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_repositories', 'id', '');
CREATE TRIGGER snapshot_preserve_truncate BEFORE TRUNCATE ON mahavishnu.repositories
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_preserve_table('snap_repositories', 'id', '');

CREATE TRIGGER snapshot_preserve_update AFTER UPDATE ON mahavishnu.source_files
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_source_files', 'id', '');
CREATE TRIGGER snapshot_preserve_delete AFTER DELETE ON mahavishnu.source_files
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_source_files', 'id', '');
CREATE TRIGGER snapshot_preserve_truncate BEFORE TRUNCATE ON mahavishnu.source_files
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_preserve_table('snap_source_files', 'id', '');

CREATE TRIGGER snapshot_preserve_update AFTER UPDATE ON mahavishnu.chunks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_chunks', 'id', '');
CREATE TRIGGER snapshot_preserve_delete AFTER DELETE ON mahavishnu.chunks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_chunks', 'id', '');
CREATE TRIGGER snapshot_preserve_truncate BEFORE TRUNCATE ON mahavishnu.chunks
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_preserve_table('snap_chunks', 'id', '');

CREATE TRIGGER snapshot_preserve_update AFTER UPDATE ON mahavishnu.embedding_spaces
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_embedding_spaces', 'id', '');
CREATE TRIGGER snapshot_preserve_delete AFTER DELETE ON mahavishnu.embedding_spaces
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_embedding_spaces', 'id', '');
CREATE TRIGGER snapshot_preserve_truncate BEFORE TRUNCATE ON mahavishnu.embedding_spaces
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_preserve_table('snap_embedding_spaces', 'id', '');

CREATE TRIGGER snapshot_preserve_update AFTER UPDATE ON mahavishnu.embeddings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_embeddings', 'space_id,content_hash', 'embedding');
CREATE TRIGGER snapshot_preserve_delete AFTER DELETE ON mahavishnu.embeddings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_embeddings', 'space_id,content_hash', 'embedding');
CREATE TRIGGER snapshot_preserve_truncate BEFORE TRUNCATE ON mahavishnu.embeddings
    FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_table('snap_embeddings', 'space_id,content_hash', 'embedding');

CREATE TRIGGER snapshot_preserve_update AFTER UPDATE ON mahavishnu.memories
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_memories', 'id', 'embedding');
CREATE TRIGGER snapshot_preserve_delete AFTER DELETE ON mahavishnu.memories
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION mahavishnu.snapshot_preserve_rows('snap_memories', 'id', 'embedding');
CREATE TRIGGER snapshot_preserve_truncate BEFORE TRUNCATE ON mahavishnu.memories
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_preserve_table('snap_memories', 'id', 'embedding');

-- Metadata filters in memory searches.
CREATE INDEX memories_metadata_idx ON mahavishnu.memories USING gin (metadata jsonb_path_ops);
