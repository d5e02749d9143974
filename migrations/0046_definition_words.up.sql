-- The words of each definition's qualified name, as search terms read them (code_words, then the `english`
-- parser: `Console.is_terminal` -> {consol, termin}; `is` is a stop word). A question's words that make up most
-- of a definition's name point at that definition (search.sql.definition_words_statement): "Check if the
-- console is writing to a terminal" -> Console.is_terminal, whose body alone rarely says so.
ALTER TABLE mahavishnu.symbols ADD COLUMN words text[]
    GENERATED ALWAYS AS (
        tsvector_to_array(to_tsvector('english'::regconfig, mahavishnu.code_words(qualified_name)))
    ) STORED;
CREATE INDEX symbols_words_idx ON mahavishnu.symbols USING gin (words);
