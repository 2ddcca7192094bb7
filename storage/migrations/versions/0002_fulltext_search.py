"""full-text search over articles' title and text (hand-written: autogenerate cannot express it)

SQLite: an external-content FTS5 table ``articles_fts`` (rowid = articles.id) kept in sync by
triggers. Diacritics are kept: in Vietnamese "số" (number, digital) and "sở" (department) are
different words. PostgreSQL: a GIN index on ``to_tsvector('simple', title || ' ' || text)``, the
expression the queries repeat verbatim (storage.models.POSTGRES_FULLTEXT_DOCUMENT).

Revision ID: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_UPGRADE = [
    "CREATE VIRTUAL TABLE articles_fts USING fts5(title, text, content='articles', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER articles_fts_insert AFTER INSERT ON articles BEGIN "
    "INSERT INTO articles_fts(rowid, title, text) VALUES (new.id, new.title, new.text); END",
    "CREATE TRIGGER articles_fts_delete AFTER DELETE ON articles BEGIN "
    "INSERT INTO articles_fts(articles_fts, rowid, title, text) "
    "VALUES ('delete', old.id, old.title, old.text); END",
    "CREATE TRIGGER articles_fts_update AFTER UPDATE OF title, text ON articles BEGIN "
    "INSERT INTO articles_fts(articles_fts, rowid, title, text) "
    "VALUES ('delete', old.id, old.title, old.text); "
    "INSERT INTO articles_fts(rowid, title, text) VALUES (new.id, new.title, new.text); END",
    "INSERT INTO articles_fts(articles_fts) VALUES ('rebuild')",
]
_SQLITE_DOWNGRADE = [
    "DROP TRIGGER IF EXISTS articles_fts_update",
    "DROP TRIGGER IF EXISTS articles_fts_delete",
    "DROP TRIGGER IF EXISTS articles_fts_insert",
    "DROP TABLE IF EXISTS articles_fts",
]
_POSTGRES_UPGRADE = [
    "CREATE INDEX articles_fts_gin ON articles "
    "USING gin (to_tsvector('simple', articles.title || ' ' || articles.text))",
]
_POSTGRES_DOWNGRADE = ["DROP INDEX IF EXISTS articles_fts_gin"]


def _run(statements_by_dialect: dict[str, list[str]]) -> None:
    for statement in statements_by_dialect.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def upgrade() -> None:
    """Create the full-text index of the backend."""
    _run({"sqlite": _SQLITE_UPGRADE, "postgresql": _POSTGRES_UPGRADE})


def downgrade() -> None:
    """Drop the full-text index of the backend."""
    _run({"sqlite": _SQLITE_DOWNGRADE, "postgresql": _POSTGRES_DOWNGRADE})
