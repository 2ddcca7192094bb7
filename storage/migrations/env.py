"""Alembic environment of dtmon: migrations follow storage/schema.py (the tables the ORM models
of storage/models.py are mapped onto).

Run them with :func:`storage.db.init_db` (the CLI and the daemon do it at start-up); there is
no alembic.ini, the configuration is built in code by :func:`storage.db.alembic_config`.

Nothing is released yet, so the schema is one revision, ``0001``, generated from the models.
After changing storage/schema.py, regenerate it with one command and review the diff:

    scripts/regen-migration

tests/test_storage.py fails while the models and the migrations disagree.
"""

from alembic import context
from alembic.operations import ops
from sqlalchemy import Connection, ForeignKeyConstraint, String

from storage.models import Base, include_in_schema_comparison


def _is_use_alter_key(item: object) -> bool:
    return isinstance(item, ForeignKeyConstraint) and item.use_alter


def defer_use_alter_foreign_keys(_context, _revision, directives: list) -> None:
    """Create ``use_alter`` foreign keys after every table, and drop them before any.

    Autogenerate writes them inline, which fails on PostgreSQL when they close a cycle
    (stories.representative_id -> articles -> stories).
    """
    script = directives[0]
    deferred: list[ForeignKeyConstraint] = []
    for operation in script.upgrade_ops.ops:
        if isinstance(operation, ops.CreateTableOp):
            keys = [c for c in operation.columns if _is_use_alter_key(c)]
            operation.columns = [c for c in operation.columns if not _is_use_alter_key(c)]
            deferred.extend(keys)
    for key in deferred:
        table = key.parent.name
        script.upgrade_ops.ops.append(
            ops.ModifyTableOps(table, [ops.CreateForeignKeyOp.from_constraint(key)])
        )
        script.downgrade_ops.ops.insert(
            0, ops.ModifyTableOps(table, [ops.DropConstraintOp.from_constraint(key)])
        )


def compare_type(context, _inspected_column, _metadata_column, inspected_type, metadata_type
                 ) -> bool | None:
    """SQLite stores strings of any length whatever VARCHAR(n) says: a change of length only
    needs no migration there (None: Alembic's own comparison decides)."""
    if (context.dialect.name == "sqlite" and isinstance(inspected_type, String)
            and isinstance(metadata_type, String)
            and type(inspected_type)._type_affinity is type(metadata_type)._type_affinity):
        return False
    return None


def run_migrations(connection: Connection) -> None:
    """Compare with or migrate to ``Base.metadata`` over ``connection``."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite can only ALTER by copying the table
        compare_type=compare_type,
        include_object=include_in_schema_comparison,
        process_revision_directives=defer_use_alter_foreign_keys,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations(context.config.attributes["connection"])
