"""Where documents go: the embedded SQLite store, NDJSON, Elasticsearch."""
