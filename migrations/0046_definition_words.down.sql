DROP INDEX mahavishnu.symbols_words_idx;
ALTER TABLE mahavishnu.symbols DROP COLUMN words;
