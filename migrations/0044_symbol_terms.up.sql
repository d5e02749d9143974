-- A chunk's search terms also hold the words of the definition it lies in (`chunks.symbol`, the qualified name
-- such as `QuerySet.filter`, split into words by code_words), weighted B between the path (A) and the content
-- (D). A question about a function ("return the random secret key") then meets the chunk whose definition is
-- named by those words (get_random_secret_key) above the chunks that merely call it. Text search weighs B in
-- search/sql.py (SYMBOL_WEIGHT).
CREATE FUNCTION mahavishnu.chunk_terms(path text, symbol text, content text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN setweight(to_tsvector('english'::regconfig, mahavishnu.code_words(path)), 'A')
    || setweight(to_tsvector('english'::regconfig, mahavishnu.code_words(coalesce(symbol, ''))), 'B')
    || to_tsvector('english'::regconfig, mahavishnu.code_words(content));

-- PostgreSQL 17 changes a stored generated column's expression in place (the table is rewritten); older
-- servers drop and add the column and its index. Either way no trigger fires, so the lexical statistics are
-- rebuilt from the new terms.
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

SELECT mahavishnu.rebuild_lexical_stats();
