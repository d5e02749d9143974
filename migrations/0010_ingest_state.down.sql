DROP TABLE mahavishnu.ingest_runs;
ALTER TABLE mahavishnu.repositories DROP COLUMN space_id;
DROP TABLE mahavishnu.skipped_files;
ALTER TABLE mahavishnu.source_files
    DROP COLUMN config,
    DROP COLUMN inode,
    DROP COLUMN ctime_ns,
    DROP COLUMN mtime_ns;
