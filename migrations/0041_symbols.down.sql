DROP TABLE mahavishnu.snap_symbols;
DELETE FROM mahavishnu.snapshot_touches WHERE table_name = 'symbols';
ALTER TABLE mahavishnu.chunks DROP COLUMN context, DROP COLUMN symbol;
DROP TABLE mahavishnu.symbols;
