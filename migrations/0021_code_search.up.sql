-- Full-text search over chunks with identifiers split into their words, so `getUserName`, `get_user_name`
-- and `user name` meet: camelCase, PascalCase acronyms (HTTPServer), digits (base64Encode) and the
-- punctuation the text parser would otherwise keep inside one token (self._cache.get, src/auth/login.py).
CREATE FUNCTION mahavishnu.code_words(t text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN regexp_replace(regexp_replace(regexp_replace(regexp_replace(
        replace(replace(replace(replace(replace(t, '.', ' '), '/', ' '), '-', ' '), '@', ' '), ':', ' '),
        '([a-z])([A-Z])', '\1 \2', 'g'),
        '([A-Z])([A-Z][a-z])', '\1 \2', 'g'),
        '([A-Za-z])([0-9])', '\1 \2', 'g'),
        '([0-9])([A-Za-z])', '\1 \2', 'g');

-- The path's words weigh most (weight A), then the content's. English stemming and stop words, so natural
-- language queries ("how are user names parsed") meet code words too.
CREATE FUNCTION mahavishnu.chunk_terms(path text, content text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN setweight(to_tsvector('english'::regconfig, mahavishnu.code_words(path)), 'A')
    || to_tsvector('english'::regconfig, mahavishnu.code_words(content));

-- Stored, so ranking reads the terms instead of recomputing them for every matching chunk.
ALTER TABLE mahavishnu.chunks
    ADD COLUMN search_terms tsvector GENERATED ALWAYS AS (mahavishnu.chunk_terms(path, content)) STORED;
CREATE INDEX chunks_search_terms_idx ON mahavishnu.chunks USING gin (search_terms);
