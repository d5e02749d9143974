-- The seed's operational tables: memories, cache, sessions, snapshots, performance metrics.
CREATE TABLE mahavishnu.memories (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    memory_type text NOT NULL CHECK (memory_type IN ('agent', 'rag', 'workflow', 'insight')),
    content     text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    space_id    integer,
    dimensions  integer,
    embedding   vector,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (space_id, dimensions) REFERENCES mahavishnu.embedding_spaces (id, dimensions) ON DELETE CASCADE,
    CHECK ((embedding IS NULL) = (space_id IS NULL)),
    CHECK (embedding IS NULL OR vector_dims(embedding) = dimensions)
);
CREATE INDEX memories_type_created_idx ON mahavishnu.memories (memory_type, created_at DESC);
CREATE INDEX memories_space_idx ON mahavishnu.memories (space_id);

CREATE TABLE mahavishnu.cache_entries (
    key              text PRIMARY KEY,
    value            jsonb NOT NULL,
    tags             text[] NOT NULL DEFAULT '{}',
    expires_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_accessed_at timestamptz NOT NULL DEFAULT now(),
    hit_count        bigint NOT NULL DEFAULT 0
);
CREATE INDEX cache_entries_tags_idx ON mahavishnu.cache_entries USING gin (tags);
CREATE INDEX cache_entries_expires_idx ON mahavishnu.cache_entries (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE mahavishnu.sessions (
    id             uuid PRIMARY KEY,
    token_hash     bytea NOT NULL UNIQUE,
    owner          text NOT NULL,
    data           jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_active_at timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX sessions_owner_idx ON mahavishnu.sessions (owner);
CREATE INDEX sessions_last_active_idx ON mahavishnu.sessions (last_active_at);
CREATE INDEX sessions_expires_idx ON mahavishnu.sessions (expires_at);

CREATE TABLE mahavishnu.memory_snapshots (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    stats       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX memory_snapshots_created_idx ON mahavishnu.memory_snapshots (created_at DESC);

CREATE TABLE mahavishnu.performance_metrics (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    metric      text NOT NULL,
    value       double precision NOT NULL,
    labels      jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX performance_metrics_metric_time_idx ON mahavishnu.performance_metrics (metric, recorded_at DESC);
