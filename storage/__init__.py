"""dtmon storage: the schema (Core tables) and its ORM models, database access, read queries,
repositories and migrations."""
