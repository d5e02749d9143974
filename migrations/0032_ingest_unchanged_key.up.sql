-- What a repository's last ingest proved unchanged: a digest of its clean git HEAD, root, settings and
-- embedding space, written only by a run that found every file as stored. While git still reports that HEAD
-- with a clean work tree, a re-ingest has nothing to read. Every ingest clears it before writing anything,
-- and a snapshot restores it together with the files it describes.
ALTER TABLE mahavishnu.repositories ADD COLUMN unchanged_key text;
