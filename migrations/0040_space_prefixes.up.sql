-- Document and query prefixes (the instructions on a model's card, such as nomic-embed-text's
-- `search_document: ` / `search_query: `) change every vector the model makes, so they are part of a space's
-- identity: the same model with other prefixes is another space, and its vectors are never compared with
-- these. Spaces made before this migration had no prefixes, which '' says.
ALTER TABLE mahavishnu.embedding_spaces
    ADD COLUMN document_prefix text NOT NULL DEFAULT '',
    ADD COLUMN query_prefix text NOT NULL DEFAULT '',
    DROP CONSTRAINT embedding_spaces_provider_model_dimensions_key,
    ADD CONSTRAINT embedding_spaces_identity_key
        UNIQUE (provider, model, dimensions, document_prefix, query_prefix);
