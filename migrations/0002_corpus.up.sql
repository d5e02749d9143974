-- Repositories, their files and chunks, and embeddings per embedding space.
CREATE TABLE mahavishnu.repositories (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    root_path        text NOT NULL,
    head_commit      text,
    last_ingested_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mahavishnu.source_files (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo_id      bigint NOT NULL REFERENCES mahavishnu.repositories (id) ON DELETE CASCADE,
    path         text NOT NULL,
    content_hash bytea NOT NULL,
    language     text NOT NULL,
    size_bytes   bigint NOT NULL CHECK (size_bytes >= 0),
    line_count   integer NOT NULL CHECK (line_count >= 0),
    commit       text,
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (repo_id, path)
);
CREATE INDEX source_files_content_hash_idx ON mahavishnu.source_files (content_hash);

CREATE TABLE mahavishnu.chunks (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id      bigint NOT NULL REFERENCES mahavishnu.source_files (id) ON DELETE CASCADE,
    repo_id      bigint NOT NULL REFERENCES mahavishnu.repositories (id) ON DELETE CASCADE,
    chunk_index  integer NOT NULL CHECK (chunk_index >= 0),
    path         text NOT NULL,
    language     text NOT NULL,
    start_line   integer NOT NULL CHECK (start_line >= 1),
    end_line     integer NOT NULL,
    content      text NOT NULL,
    content_hash bytea NOT NULL,
    commit       text,
    CHECK (end_line >= start_line),
    UNIQUE (file_id, chunk_index)
);
CREATE INDEX chunks_repo_path_idx ON mahavishnu.chunks (repo_id, path);
CREATE INDEX chunks_content_hash_idx ON mahavishnu.chunks (content_hash);

-- One space per (provider, model, dimensions): vectors of different models are never compared.
CREATE TABLE mahavishnu.embedding_spaces (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider   text NOT NULL,
    model      text NOT NULL,
    dimensions integer NOT NULL CHECK (dimensions BETWEEN 1 AND 16000),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, model, dimensions),
    UNIQUE (id, dimensions)
);

-- Keyed by content, so an unchanged chunk anywhere (edited file, renamed file, other repository) is embedded
-- once per space. The composite key to (id, dimensions) plus the CHECK keeps every vector the space's size.
CREATE TABLE mahavishnu.embeddings (
    space_id     integer NOT NULL,
    content_hash bytea NOT NULL,
    dimensions   integer NOT NULL,
    embedding    vector NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, content_hash),
    FOREIGN KEY (space_id, dimensions) REFERENCES mahavishnu.embedding_spaces (id, dimensions) ON DELETE CASCADE,
    CHECK (vector_dims(embedding) = dimensions)
);
