-- Dagster's own run storage lives beside the memory, in its own database.
CREATE DATABASE dagster OWNER mahavishnu;
