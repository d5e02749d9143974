"""Repository ingestion: discover files, chunk them, embed the chunks, load everything into PostgreSQL."""
