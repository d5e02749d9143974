-- With vectors kept inline (0022) an embeddings row is ~3 kB, over the ~2 kB TOAST target, so the toaster
-- moved the only other variable-length column, the 32-byte content_hash, out of line: every join on it
-- (search, snapshots, ingestion) then paid a TOAST lookup per row. A hash never needs TOAST.
ALTER TABLE mahavishnu.embeddings ALTER COLUMN content_hash SET STORAGE PLAIN;
