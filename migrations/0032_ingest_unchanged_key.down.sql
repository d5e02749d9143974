ALTER TABLE mahavishnu.repositories DROP COLUMN unchanged_key;
