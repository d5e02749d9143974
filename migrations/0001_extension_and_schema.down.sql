DROP SCHEMA mahavishnu;
-- Without CASCADE: if anything else in this database uses pgvector, the extension stays.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
         WHERE e.extname = 'vector' AND d.deptype = 'n'
    ) THEN
        DROP EXTENSION IF EXISTS vector;
    END IF;
END $$;
