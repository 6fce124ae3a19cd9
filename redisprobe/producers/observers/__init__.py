"""Background observers of a live server: keyspace events, CLIENT LIST, MONITOR; each writes trace events."""
