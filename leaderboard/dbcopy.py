"""Copy a whole database into another, empty one (e.g. an instance's SQLite file into PostgreSQL).

The source's tables are read by reflection (so a database of any podium release, 0.1 included,
is copied as it is, ``alembic_version`` too), made in the target with the same columns, keys,
indexes and constraints in generic SQL types, and their rows copied in foreign-key order, in
batches, in one transaction. PostgreSQL's id sequences are then moved past the copied ids.
Run ``podium db upgrade`` on the target afterwards, as on any older database.
"""
from __future__ import annotations

import sqlalchemy as sa

from harness.errors import PodiumError

BATCH = 500


def _generic(metadata: sa.MetaData) -> sa.MetaData:
    """The reflected tables with each column's type made dialect-neutral (SQLite's DATETIME -> DateTime)."""
    for table in metadata.tables.values():
        for column in table.columns:
            try:
                column.type = column.type.as_generic()
            except NotImplementedError:  # a type with no generic form is kept as reflected
                pass
            column.server_default = None  # dialect-specific defaults; podium sets values in Python
    return metadata


def copy_database(source_url: str, target_url: str, progress=None) -> dict[str, int]:
    """Copy every table and row of ``source_url`` into the empty database ``target_url``; the row
    counts by table. Refuses a target that has tables already."""
    source = sa.create_engine(source_url)
    target = sa.create_engine(target_url)
    try:
        with target.connect() as conn:
            existing = sa.inspect(conn).get_table_names()
        if existing:
            raise PodiumError(f"The target database is not empty (it has {', '.join(sorted(existing))}); "
                              "copy into a new, empty database.")
        metadata = sa.MetaData()
        with source.connect() as src:
            metadata.reflect(bind=src)
            _generic(metadata)
            counts: dict[str, int] = {}
            with target.begin() as dst:
                metadata.create_all(dst)
                for table in metadata.sorted_tables:
                    order = list(table.primary_key.columns) or list(table.columns)
                    rows = src.execute(sa.select(table).order_by(*order)).mappings()
                    counts[table.name] = 0
                    while batch := [dict(r) for r in rows.fetchmany(BATCH)]:
                        dst.execute(sa.insert(table), batch)
                        counts[table.name] += len(batch)
                        if progress is not None:
                            progress(table.name, len(batch))
                if dst.dialect.name == "postgresql":
                    _advance_sequences(dst, metadata)
        return counts
    finally:
        source.dispose()
        target.dispose()


def _advance_sequences(conn: sa.Connection, metadata: sa.MetaData) -> None:
    """Rows copied with their ids leave a serial column's sequence at 1: move it past the largest id."""
    for table in metadata.sorted_tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, sa.Integer):
            continue
        sequence = conn.scalar(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                               {"t": table.name, "c": pk[0].name})
        if sequence:
            quote = conn.dialect.identifier_preparer.quote
            largest = f"SELECT MAX({quote(pk[0].name)}) FROM {quote(table.name)}"
            conn.execute(sa.text(f"SELECT setval(:s, COALESCE(({largest}), 0) + 1, false)"), {"s": sequence})
