ALTER TABLE mahavishnu.embeddings ALTER COLUMN content_hash SET STORAGE DEFAULT;
