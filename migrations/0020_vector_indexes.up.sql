-- (Not named ann_*: that prefix marks the ANN indexes themselves, which the schema-drift check skips.)
-- Facts of each embedding space's ANN index: how it was chosen and built, the tuned search parameter every
-- search uses, and the recall and latency measured against exact search after the build. One row per space;
-- the indexes themselves (named ann_*) are built and dropped by the index asset, never by migrations.
CREATE TABLE mahavishnu.vector_indexes (
    space_id             integer PRIMARY KEY REFERENCES mahavishnu.embedding_spaces (id) ON DELETE CASCADE,
    method               text NOT NULL CHECK (method IN ('exact', 'ivfflat', 'hnsw')),
    index_name           text CHECK (index_name LIKE 'ann\_%'),
    generation           integer NOT NULL DEFAULT 0 CHECK (generation >= 0),
    params               jsonb NOT NULL DEFAULT '{}'::jsonb,
    lists_rule           text,
    reason               text NOT NULL DEFAULT '',
    dimensions           integer NOT NULL CHECK (dimensions > 0),
    rows_at_build        bigint NOT NULL CHECK (rows_at_build >= 0),
    build_seconds        double precision,
    maintenance_work_mem text,
    search_param         text CHECK (search_param IN ('ivfflat.probes', 'hnsw.ef_search')),
    search_value         integer CHECK (search_value > 0),
    target_recall        double precision NOT NULL CHECK (target_recall > 0 AND target_recall <= 1),
    recall_at_10         double precision CHECK (recall_at_10 BETWEEN 0 AND 1),
    sample_queries       integer,
    exact_p50_ms         double precision,
    exact_p99_ms         double precision,
    exact_qps            double precision,
    ann_p50_ms           double precision,
    ann_p99_ms           double precision,
    ann_qps              double precision,
    built_at             timestamptz,
    measured_at          timestamptz,
    CHECK ((method = 'exact') = (index_name IS NULL)),
    CHECK ((search_param IS NULL) = (search_value IS NULL))
);
