"""The document and query prefixes each embedding model's card asks for, by model name."""

from __future__ import annotations

# Retrieval models trained with instructions embed a text differently depending on whether it is a query or a
# document, and expect to be told which by a prefix; without it queries and documents meet less often.
_BGE_QUERY = "Represent this sentence for searching relevant passages: "

# (name prefix, document prefix, query prefix), most specific first; the name is the model's without its
# `:tag` and namespace, lower-cased. Sources: each model's card on Hugging Face or ollama.com.
_TABLE: tuple[tuple[str, str, str], ...] = (
    # nomic-embed-code: queries only.
    ("nomic-embed-code", "", "Represent this query for searching relevant code: "),
    # nomic-embed-text v1, v1.5 and v2-moe: both sides.
    ("nomic-embed-text", "search_document: ", "search_query: "),
    ("mxbai-embed-large", "", _BGE_QUERY),
    # Arctic Embed 2.0 (Ollama's `snowflake-arctic-embed2`) changed its query prefix; 1.x uses BGE's.
    ("snowflake-arctic-embed2", "", "query: "),
    ("snowflake-arctic-embed-m-v2", "", "query: "),
    ("snowflake-arctic-embed-l-v2", "", "query: "),
    ("snowflake-arctic-embed", "", _BGE_QUERY),
    # BGE-M3 needs no instruction; the English BGE v1.5 models take one on queries.
    ("bge-m3", "", ""),
    ("bge-", "", _BGE_QUERY),
    ("multilingual-e5-large-instruct", "", ""),  # instruction per task: no fixed prefix to apply
    ("multilingual-e5", "passage: ", "query: "),
    ("e5-mistral", "", ""),
    ("e5-", "passage: ", "query: "),
    ("embeddinggemma", "title: none | text: ", "task: search result | query: "),
    (
        "qwen3-embedding",
        "",
        "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:",
    ),
    # No prefixes on their cards: all-minilm, granite-embedding, paraphrase-multilingual, jina, and the rest.
)


def base_name(model: str) -> str:
    """`hf.co/user/Model-Name:Q8_0` -> `model-name`: what the table is keyed by."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def model_prefixes(model: str) -> tuple[str, str]:
    """(document prefix, query prefix) from the model's card; ("", "") for a model that asks for none."""
    name = base_name(model)
    for start, document, query in _TABLE:
        if name.startswith(start):
            return document, query
    return "", ""
