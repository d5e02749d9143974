ALTER TABLE mahavishnu.embeddings ALTER COLUMN embedding SET STORAGE DEFAULT;
