-- The queries users ran (vector and hybrid searches), newest kept per space: the ANN tuner measures recall on
-- them beside queries derived from chunks, since they are the queries the index must serve. Only the text is
-- kept, never its vector: the tuner embeds it again through the space's embedder, as search does, so a query
-- instruction or prefix added to the embedder later applies to logged queries too. Bounded by the writer
-- (index/query_log.py prunes past index.query_log_size per space) and by maintenance.
CREATE TABLE mahavishnu.query_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    space_id integer NOT NULL REFERENCES mahavishnu.embedding_spaces (id) ON DELETE CASCADE,
    mode     text NOT NULL CHECK (mode IN ('vector', 'hybrid')),
    query    text NOT NULL CHECK (length(query) BETWEEN 1 AND 1000),
    ran_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX query_log_space_newest_idx ON mahavishnu.query_log (space_id, id DESC);

-- What the recall of each index was measured on, and the recall of a held-out sample at the same setting.
ALTER TABLE mahavishnu.vector_indexes
    ADD COLUMN recall_queries text CHECK (recall_queries IN ('text', 'stored_vectors')),
    ADD COLUMN heldout_recall_at_10 double precision CHECK (heldout_recall_at_10 BETWEEN 0 AND 1),
    ADD COLUMN heldout_queries integer;
