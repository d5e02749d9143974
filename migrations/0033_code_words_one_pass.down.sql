CREATE OR REPLACE FUNCTION mahavishnu.code_words(t text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN regexp_replace(regexp_replace(regexp_replace(regexp_replace(
        replace(replace(replace(replace(replace(t, '.', ' '), '/', ' '), '-', ' '), '@', ' '), ':', ' '),
        '([a-z])([A-Z])', '\1 \2', 'g'),
        '([A-Z])([A-Z][a-z])', '\1 \2', 'g'),
        '([A-Za-z])([0-9])', '\1 \2', 'g'),
        '([0-9])([A-Za-z])', '\1 \2', 'g');
