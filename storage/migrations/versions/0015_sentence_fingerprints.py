"""sentence_fingerprints: articles' long sentences, for containment candidates and boilerplate

Revision ID: 0015_sentences
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_sentences"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the sentence index (empty: articles stored before are not back-filled)."""
    op.create_table(
        "sentence_fingerprints",
        sa.Column("sentence_hash", sa.BigInteger(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"]),
        sa.PrimaryKeyConstraint("sentence_hash", "article_id"),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("sentence_fingerprints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sentence_fingerprints_article_id"), ["article_id"],
                              unique=False)


def downgrade() -> None:
    """Drop the sentence index."""
    with op.batch_alter_table("sentence_fingerprints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sentence_fingerprints_article_id"))
    op.drop_table("sentence_fingerprints")
