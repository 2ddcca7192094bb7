"""owed articles, the process owning a crawl run, URL columns for any URL the crawler fetches

``owed_articles``: every article URL discovered and not stored, fetched again by later runs
until stored or given up (crawler/pipelines.py). ``crawl_runs.pid``/``host``: a run whose
process is gone is marked failed (monitor/crawling.py). URL columns grow from VARCHAR(2048) to
VARCHAR(2500) on PostgreSQL (SQLite stores any length whatever the declaration says).

Revision ID: 0017_owed
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_owed"
down_revision: str | Sequence[str] | None = "0015_sentences"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_URL_COLUMNS = [("articles", "url"), ("articles", "url_key"), ("article_urls", "url"),
                ("fetch_state", "url")]


def _resize_urls(length: int) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _URL_COLUMNS:
        op.alter_column(table, column, type_=sa.String(length=length))


def upgrade() -> None:
    """Create owed_articles, add crawl_runs.pid/host, widen the URL columns."""
    op.create_table(
        "owed_articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url_key", sa.String(length=2500), nullable=False),
        sa.Column("url", sa.String(length=2500), nullable=False),
        sa.Column("source_name", sa.String(length=100), nullable=False),
        sa.Column("found_on", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url_key"),
    )
    with op.batch_alter_table("owed_articles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_owed_articles_next_attempt_at"),
                              ["next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_owed_articles_source_name"), ["source_name"],
                              unique=False)
    with op.batch_alter_table("crawl_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("host", sa.String(length=200), nullable=True))
    _resize_urls(2500)


def downgrade() -> None:
    """Drop owed_articles and crawl_runs.pid/host, narrow the URL columns back."""
    _resize_urls(2048)
    with op.batch_alter_table("crawl_runs", schema=None) as batch_op:
        batch_op.drop_column("host")
        batch_op.drop_column("pid")
    with op.batch_alter_table("owed_articles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_owed_articles_source_name"))
        batch_op.drop_index(batch_op.f("ix_owed_articles_next_attempt_at"))
    op.drop_table("owed_articles")
