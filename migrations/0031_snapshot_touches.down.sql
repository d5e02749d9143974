DROP TRIGGER snapshot_touch ON mahavishnu.memories;
DROP TRIGGER snapshot_touch ON mahavishnu.embeddings;
DROP TRIGGER snapshot_touch ON mahavishnu.chunks;
DROP TRIGGER snapshot_touch ON mahavishnu.source_files;
DROP TRIGGER snapshot_touch ON mahavishnu.embedding_spaces;
DROP TRIGGER snapshot_touch ON mahavishnu.repositories;
DROP FUNCTION mahavishnu.snapshot_touch();
DROP TABLE mahavishnu.snapshot_touches;
