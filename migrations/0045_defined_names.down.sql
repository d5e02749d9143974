DROP INDEX mahavishnu.symbols_spelled_name_idx;
CREATE FUNCTION mahavishnu.chunk_terms(path text, symbol text, content text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN setweight(to_tsvector('english'::regconfig, mahavishnu.code_words(path)), 'A')
    || setweight(to_tsvector('english'::regconfig, mahavishnu.code_words(coalesce(symbol, ''))), 'B')
    || to_tsvector('english'::regconfig, mahavishnu.code_words(content));
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 170000 THEN
        ALTER TABLE mahavishnu.chunks
            ALTER COLUMN search_terms SET EXPRESSION AS (mahavishnu.chunk_terms(path, symbol, content));
    ELSE
        ALTER TABLE mahavishnu.chunks DROP COLUMN search_terms;
        ALTER TABLE mahavishnu.chunks ADD COLUMN search_terms tsvector
            GENERATED ALWAYS AS (mahavishnu.chunk_terms(path, symbol, content)) STORED;
        CREATE INDEX chunks_search_terms_idx ON mahavishnu.chunks USING gin (search_terms);
    END IF;
END $$;
DROP FUNCTION mahavishnu.chunk_terms(text, text, text, text);
ALTER TABLE mahavishnu.chunks DROP COLUMN names;
SELECT mahavishnu.rebuild_lexical_stats();
