"""Memory operations: memories, cache, sessions, snapshots, maintenance and pool monitoring."""
