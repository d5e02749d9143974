DROP TABLE mahavishnu.embeddings;
DROP TABLE mahavishnu.embedding_spaces;
DROP TABLE mahavishnu.chunks;
DROP TABLE mahavishnu.source_files;
DROP TABLE mahavishnu.repositories;
