DROP TABLE mahavishnu.performance_metrics;
DROP TABLE mahavishnu.memory_snapshots;
DROP TABLE mahavishnu.sessions;
DROP TABLE mahavishnu.cache_entries;
DROP TABLE mahavishnu.memories;
