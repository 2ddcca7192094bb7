"""dtmon storage: SQLAlchemy models, database access, repositories and migrations."""
