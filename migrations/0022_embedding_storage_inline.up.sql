-- pgvector's type stores vectors out of line (TOAST) once a row passes ~2 kB, i.e. from ~500 dimensions:
-- every exact scan then detoasts each vector through the TOAST index (measured 5x slower at 100k x 768).
-- MAIN keeps vectors inline in the heap page while the row fits (up to ~2,000 dimensions) and moves only
-- larger ones out of line. Applies to rows written from now on.
ALTER TABLE mahavishnu.embeddings ALTER COLUMN embedding SET STORAGE MAIN;
