DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 170000 THEN
        ALTER TABLE mahavishnu.chunks
            ALTER COLUMN search_terms SET EXPRESSION AS (mahavishnu.chunk_terms(path, content));
    ELSE
        ALTER TABLE mahavishnu.chunks DROP COLUMN search_terms;
        ALTER TABLE mahavishnu.chunks ADD COLUMN search_terms tsvector
            GENERATED ALWAYS AS (mahavishnu.chunk_terms(path, content)) STORED;
        CREATE INDEX chunks_search_terms_idx ON mahavishnu.chunks USING gin (search_terms);
    END IF;
END $$;
DROP FUNCTION mahavishnu.chunk_terms(text, text, text);
SELECT mahavishnu.rebuild_lexical_stats();
