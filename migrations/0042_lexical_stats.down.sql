DROP TRIGGER chunks_lexical_stats_truncate ON mahavishnu.chunks;
DROP TRIGGER chunks_lexical_stats_delete ON mahavishnu.chunks;
DROP TRIGGER chunks_lexical_stats_update ON mahavishnu.chunks;
DROP TRIGGER chunks_lexical_stats_insert ON mahavishnu.chunks;
DROP FUNCTION mahavishnu.rebuild_lexical_stats();
DROP FUNCTION mahavishnu.lexical_stats_truncated();
DROP FUNCTION mahavishnu.lexical_stats_changed();
DROP TABLE mahavishnu.lexical_terms;
DROP TABLE mahavishnu.lexical_repo_stats;
