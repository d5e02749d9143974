-- Which snapshotted tables changed since the last snapshot, so a snapshot skips the unchanged ones.
-- A statement trigger records (table, writing transaction); the row is transactional, so it becomes visible
-- exactly when the changes do, and a snapshot consumes the ones its own transaction snapshot sees.
CREATE TABLE mahavishnu.snapshot_touches (
    table_name text NOT NULL,
    xid        xid8 NOT NULL,
    PRIMARY KEY (table_name, xid)
);

CREATE FUNCTION mahavishnu.snapshot_touch() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO mahavishnu.snapshot_touches (table_name, xid) VALUES (TG_TABLE_NAME, pg_current_xact_id())
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER snapshot_touch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mahavishnu.repositories
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_touch();
CREATE TRIGGER snapshot_touch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mahavishnu.embedding_spaces
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_touch();
CREATE TRIGGER snapshot_touch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mahavishnu.source_files
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_touch();
CREATE TRIGGER snapshot_touch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mahavishnu.chunks
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_touch();
CREATE TRIGGER snapshot_touch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mahavishnu.embeddings
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_touch();
CREATE TRIGGER snapshot_touch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mahavishnu.memories
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.snapshot_touch();

-- Changes made before this migration were not recorded: the next snapshot compares every table.
INSERT INTO mahavishnu.snapshot_touches (table_name, xid)
SELECT t, pg_current_xact_id()
  FROM unnest(ARRAY['repositories', 'embedding_spaces', 'source_files', 'chunks', 'embeddings', 'memories']) t;
