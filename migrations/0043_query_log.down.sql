ALTER TABLE mahavishnu.vector_indexes
    DROP COLUMN heldout_queries,
    DROP COLUMN heldout_recall_at_10,
    DROP COLUMN recall_queries;
DROP TABLE mahavishnu.query_log;
