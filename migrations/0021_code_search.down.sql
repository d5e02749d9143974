DROP INDEX mahavishnu.chunks_search_terms_idx;
ALTER TABLE mahavishnu.chunks DROP COLUMN search_terms;
DROP FUNCTION mahavishnu.chunk_terms(text, text);
DROP FUNCTION mahavishnu.code_words(text);
