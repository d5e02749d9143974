-- pgvector and the schema every other object lives in.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA mahavishnu;
