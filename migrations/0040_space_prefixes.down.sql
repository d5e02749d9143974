-- Without the prefix columns a space with prefixes would claim vectors made without them: such spaces go,
-- with their vectors (cascade), so every space left is what the older identity says it is.
DELETE FROM mahavishnu.embedding_spaces WHERE document_prefix <> '' OR query_prefix <> '';
ALTER TABLE mahavishnu.embedding_spaces
    DROP CONSTRAINT embedding_spaces_identity_key,
    DROP COLUMN document_prefix,
    DROP COLUMN query_prefix,
    ADD CONSTRAINT embedding_spaces_provider_model_dimensions_key UNIQUE (provider, model, dimensions);
