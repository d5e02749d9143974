-- A chunk's search terms also hold the names of the definitions that begin in it (`chunks.names`, from the
-- definitions tree-sitter finds), weighted B like the definition it lies in. A chunk that merges small methods
-- is where each of them is defined, but its own symbol names only their class: "get the color system" met the
-- chunk defining `color_system` through content words alone, as weak as any call of it.
ALTER TABLE mahavishnu.chunks ADD COLUMN names text;

CREATE FUNCTION mahavishnu.chunk_terms(path text, symbol text, names text, content text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN setweight(to_tsvector('english'::regconfig, mahavishnu.code_words(path)), 'A')
    || setweight(to_tsvector('english'::regconfig, mahavishnu.code_words(coalesce(symbol, ''))), 'B')
    || setweight(to_tsvector('english'::regconfig, mahavishnu.code_words(coalesce(names, ''))), 'B')
    || to_tsvector('english'::regconfig, mahavishnu.code_words(content));

-- With every `names` still NULL the new expression gives the same terms, so the statistics stay right; the
-- update below then changes them through the statistics' triggers.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 170000 THEN
        ALTER TABLE mahavishnu.chunks
            ALTER COLUMN search_terms SET EXPRESSION AS (mahavishnu.chunk_terms(path, symbol, names, content));
    ELSE
        ALTER TABLE mahavishnu.chunks DROP COLUMN search_terms;
        ALTER TABLE mahavishnu.chunks ADD COLUMN search_terms tsvector
            GENERATED ALWAYS AS (mahavishnu.chunk_terms(path, symbol, names, content)) STORED;
        CREATE INDEX chunks_search_terms_idx ON mahavishnu.chunks USING gin (search_terms);
    END IF;
END $$;
DROP FUNCTION mahavishnu.chunk_terms(text, text, text);

-- Chunks stored before get the names ingest gives (ingest.context.Enclosing.names): the definitions whose first
-- line lies in the chunk, by line, then in source order (the order their rows were given ids).
UPDATE mahavishnu.chunks c
   SET names = d.names
  FROM (SELECT c2.id, string_agg(s.name, ' ' ORDER BY s.start_line, s.id) AS names
          FROM mahavishnu.chunks c2
          JOIN mahavishnu.symbols s
            ON s.file_id = c2.file_id AND s.start_line BETWEEN c2.start_line AND c2.end_line
         GROUP BY c2.id) d
 WHERE d.id = c.id;

-- Definitions by the words of their name run together (`color_system`, `colorSystem` -> `colorsystem`): a
-- question that spells a name ("get the color system") finds it (search.sql.spelled_name_statement).
CREATE INDEX symbols_spelled_name_idx ON mahavishnu.symbols (lower(replace(name, '_', '')));
