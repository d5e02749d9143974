-- Collection statistics for BM25 ranking of text search (search/sql.py), per repository: how many chunks
-- hold each lexeme of `search_terms` (document frequency), and how many chunks and distinct lexemes each
-- repository holds (N and the total length behind the average length). A search over all repositories sums
-- the rows of every repository; a search filtered to one repository reads that repository's rows only.
--
-- Statement-level triggers with transition tables keep them exact in the writing transaction, whatever
-- writes the chunks (COPY, INSERT, DELETE, cascades from files or repositories): a rolled-back batch rolls
-- its statistics back with it. Rows are per repository so that concurrent ingests of different repositories
-- never update the same rows.
--
-- Length is a chunk's number of distinct lexemes (`length(search_terms)`), the measure of Singhal, Buckley and
-- Mitra's pivoted unique normalization (SIGIR 1996); it is cheap on both sides (the tsvector's header), and a
-- repository's total length is then the sum of its document frequencies.
CREATE TABLE mahavishnu.lexical_repo_stats (
    repo_id bigint PRIMARY KEY,
    chunks  bigint NOT NULL,
    lexemes bigint NOT NULL
);

-- Keyed by lexeme first: a query looks its few lexemes up, over one or every repository. "C" collation: the
-- trigger's upserts take row locks in one byte order. Most updates change only `df` (not indexed), so they
-- stay on the page (HOT) when the page has room.
CREATE TABLE mahavishnu.lexical_terms (
    lexeme  text COLLATE "C" NOT NULL,
    repo_id bigint NOT NULL,
    df      integer NOT NULL,
    PRIMARY KEY (lexeme, repo_id)
) WITH (fillfactor = 80);

-- Applies one statement's changed chunks to the statistics (+1 for each new row, -1 for each old one). The
-- repository rows are updated first, in id order: a transaction that changes a repository's statistics then
-- holds that row before any of its lexeme rows, so two writers of one repository (an ingest's writer
-- connections) queue on it instead of deadlocking on lexemes, and writers of different repositories never
-- meet. Lexeme rows go in (lexeme, repository) order; rows that fall to zero are removed. The statement reads
-- the trigger's transition tables, whose names differ by event, hence the one constant source per event.
CREATE FUNCTION mahavishnu.lexical_stats_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    changed constant text := CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT repo_id, search_terms, 1 AS sign FROM new_rows'
        WHEN 'DELETE' THEN 'SELECT repo_id, search_terms, -1 AS sign FROM old_rows'
        ELSE 'SELECT repo_id, search_terms, 1 AS sign FROM new_rows
              UNION ALL SELECT repo_id, search_terms, -1 FROM old_rows' END;
    gone_repos bigint[];
    gone_lexemes text[];
    gone_lexeme_repos bigint[];
BEGIN
    EXECUTE format($sql$
        WITH up AS (
            INSERT INTO mahavishnu.lexical_repo_stats AS s (repo_id, chunks, lexemes)
            SELECT c.repo_id, sum(c.sign), sum(c.sign * length(c.search_terms))
              FROM (%s) c
             GROUP BY c.repo_id
             ORDER BY c.repo_id
            ON CONFLICT (repo_id) DO UPDATE
               SET chunks = s.chunks + EXCLUDED.chunks, lexemes = s.lexemes + EXCLUDED.lexemes
            RETURNING repo_id, chunks)
        SELECT array_agg(repo_id) FROM up WHERE chunks <= 0$sql$, changed)
    INTO gone_repos;
    EXECUTE format($sql$
        WITH up AS (
            INSERT INTO mahavishnu.lexical_terms AS t (lexeme, repo_id, df)
            SELECT l.lexeme COLLATE "C", c.repo_id, sum(c.sign)
              FROM (%s) c, unnest(tsvector_to_array(c.search_terms)) AS l(lexeme)
             GROUP BY 1, 2
            HAVING sum(c.sign) <> 0
             ORDER BY 1, 2
            ON CONFLICT (lexeme, repo_id) DO UPDATE SET df = t.df + EXCLUDED.df
            RETURNING lexeme, repo_id, df)
        SELECT array_agg(lexeme), array_agg(repo_id) FROM up WHERE df <= 0$sql$, changed)
    INTO gone_lexemes, gone_lexeme_repos;
    IF gone_lexemes IS NOT NULL THEN
        DELETE FROM mahavishnu.lexical_terms t
         USING unnest(gone_lexemes, gone_lexeme_repos) AS g(lexeme, repo_id)
         WHERE t.lexeme = g.lexeme AND t.repo_id = g.repo_id AND t.df <= 0;
    END IF;
    IF gone_repos IS NOT NULL THEN
        DELETE FROM mahavishnu.lexical_repo_stats WHERE repo_id = ANY (gone_repos) AND chunks <= 0;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION mahavishnu.lexical_stats_truncated() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM mahavishnu.lexical_terms;
    DELETE FROM mahavishnu.lexical_repo_stats;
    RETURN NULL;
END $$;

-- The statistics recomputed from the chunks: the backfill below, and a repair should they ever be bypassed
-- (a restore with triggers disabled). Writers of chunks wait meanwhile.
CREATE FUNCTION mahavishnu.rebuild_lexical_stats() RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE mahavishnu.chunks IN SHARE MODE;
    DELETE FROM mahavishnu.lexical_terms;
    DELETE FROM mahavishnu.lexical_repo_stats;
    INSERT INTO mahavishnu.lexical_repo_stats (repo_id, chunks, lexemes)
    SELECT repo_id, count(*), sum(length(search_terms)) FROM mahavishnu.chunks GROUP BY repo_id;
    INSERT INTO mahavishnu.lexical_terms (lexeme, repo_id, df)
    SELECT l.lexeme COLLATE "C", c.repo_id, count(*)
      FROM mahavishnu.chunks c, unnest(tsvector_to_array(c.search_terms)) AS l(lexeme)
     GROUP BY 1, 2;
END $$;

-- Transition tables need one trigger per event. Created before the backfill: their lock keeps writers out
-- until this migration commits, so no chunk is counted twice or missed.
CREATE TRIGGER chunks_lexical_stats_insert AFTER INSERT ON mahavishnu.chunks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.lexical_stats_changed();
CREATE TRIGGER chunks_lexical_stats_update AFTER UPDATE ON mahavishnu.chunks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.lexical_stats_changed();
CREATE TRIGGER chunks_lexical_stats_delete AFTER DELETE ON mahavishnu.chunks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.lexical_stats_changed();
CREATE TRIGGER chunks_lexical_stats_truncate AFTER TRUNCATE ON mahavishnu.chunks
    FOR EACH STATEMENT EXECUTE FUNCTION mahavishnu.lexical_stats_truncated();

SELECT mahavishnu.rebuild_lexical_stats();
