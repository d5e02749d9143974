DROP INDEX mahavishnu.memories_metadata_idx;

DROP TRIGGER snapshot_preserve_update ON mahavishnu.memories;
DROP TRIGGER snapshot_preserve_delete ON mahavishnu.memories;
DROP TRIGGER snapshot_preserve_truncate ON mahavishnu.memories;
DROP TRIGGER snapshot_preserve_update ON mahavishnu.embeddings;
DROP TRIGGER snapshot_preserve_delete ON mahavishnu.embeddings;
DROP TRIGGER snapshot_preserve_truncate ON mahavishnu.embeddings;
DROP TRIGGER snapshot_preserve_update ON mahavishnu.embedding_spaces;
DROP TRIGGER snapshot_preserve_delete ON mahavishnu.embedding_spaces;
DROP TRIGGER snapshot_preserve_truncate ON mahavishnu.embedding_spaces;
DROP TRIGGER snapshot_preserve_update ON mahavishnu.chunks;
DROP TRIGGER snapshot_preserve_delete ON mahavishnu.chunks;
DROP TRIGGER snapshot_preserve_truncate ON mahavishnu.chunks;
DROP TRIGGER snapshot_preserve_update ON mahavishnu.source_files;
DROP TRIGGER snapshot_preserve_delete ON mahavishnu.source_files;
DROP TRIGGER snapshot_preserve_truncate ON mahavishnu.source_files;
DROP TRIGGER snapshot_preserve_update ON mahavishnu.repositories;
DROP TRIGGER snapshot_preserve_delete ON mahavishnu.repositories;
DROP TRIGGER snapshot_preserve_truncate ON mahavishnu.repositories;

DROP FUNCTION mahavishnu.snapshot_preserve_table();
DROP FUNCTION mahavishnu.snapshot_preserve_rows();

DROP TABLE mahavishnu.snap_memories;
DROP TABLE mahavishnu.snap_embeddings;
DROP TABLE mahavishnu.snap_embedding_spaces;
DROP TABLE mahavishnu.snap_chunks;
DROP TABLE mahavishnu.snap_source_files;
DROP TABLE mahavishnu.snap_repositories;

DROP SEQUENCE mahavishnu.snapshot_clock;

DROP INDEX mahavishnu.memory_snapshots_name_idx;
ALTER TABLE mahavishnu.memory_snapshots
    DROP COLUMN partition_key,
    DROP COLUMN restored_at;
