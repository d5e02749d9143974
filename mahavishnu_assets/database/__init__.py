"""PostgreSQL access: the embedded server, connection targets, the pool and migrations."""
