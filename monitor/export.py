"""Export stored articles as JSON lines, CSV or Parquet, streaming in constant memory.

Rows are read ``BATCH`` at a time (``yield_per``; the raw HTML is never loaded) in id order and
written as they come; Parquet is written one row group per batch. Each row is
:func:`monitor.records.article_record`; CSV cells holding lists or mappings carry them as JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from enum import StrEnum
from itertools import islice
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session, defer, joinedload, selectinload

from monitor.records import article_record
from monitor.search import StoryFilter, copy_conditions
from storage.models import Article

BATCH = 2000


class ExportFormat(StrEnum):
    """The file formats ``dtmon export`` writes."""

    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


COLUMNS: dict[str, pa.DataType] = {
    "id": pa.int64(),
    "story_id": pa.int64(),
    "url": pa.string(),
    "urls": pa.list_(pa.string()),
    "title": pa.string(),
    "published": pa.string(),
    "author": pa.string(),
    "original_source": pa.string(),
    "province": pa.string(),
    "source": pa.string(),
    "tags": pa.list_(pa.string()),
    "relevant": pa.bool_(),
    "topic_score": pa.float64(),
    "matched": pa.map_(pa.string(), pa.int64()),
    "fetched_at": pa.string(),
    "text": pa.string(),
}
PARQUET_SCHEMA = pa.schema(list(COLUMNS.items()))


def export_records(
    session: Session,
    *,
    since: date | None = None,
    province: str | None = None,
    relevant: bool | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream the matching articles as records, oldest id first, ``BATCH`` rows at a time."""
    conditions = copy_conditions(
        session, StoryFilter(since=since, province=province, relevant=relevant)
    )
    statement = (
        select(Article)
        .options(defer(Article.raw_html), joinedload(Article.source), selectinload(Article.urls))
        .where(*conditions)
        .order_by(Article.id)
        .execution_options(yield_per=BATCH)
    )
    for article in session.scalars(statement):
        yield article_record(article)


def write_jsonl(records: Iterable[dict[str, Any]], output: BinaryIO) -> int:
    """Write one JSON object per line (UTF-8, Vietnamese as is); returns the row count."""
    count = 0
    for count, record in enumerate(records, 1):  # noqa: B007 - the last value is the count
        output.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
    return count


def write_csv(records: Iterable[dict[str, Any]], output: BinaryIO, *, bom: bool = False) -> int:
    """Write CSV with a header row, in UTF-8; with ``bom``, starting with a byte order mark
    (Excel needs it to read Vietnamese right; most other programs do not want it)."""
    text = io.TextIOWrapper(output, encoding="utf-8-sig" if bom else "utf-8", newline="",
                            write_through=False)
    writer = csv.DictWriter(text, fieldnames=list(COLUMNS))
    writer.writeheader()
    count = 0
    for count, record in enumerate(records, 1):  # noqa: B007 - the last value is the count
        writer.writerow({key: _csv_cell(value) for key, value in record.items()})
    text.flush()
    text.detach()  # the caller owns ``output``
    return count


def write_parquet(records: Iterable[dict[str, Any]], output: BinaryIO) -> int:
    """Write Parquet (zstd), one row group of ``BATCH`` rows at a time."""
    count = 0
    iterator = iter(records)
    with pq.ParquetWriter(output, PARQUET_SCHEMA, compression="zstd") as writer:
        while batch := list(islice(iterator, BATCH)):
            for record in batch:
                record["matched"] = list(record["matched"].items())
            writer.write_table(pa.Table.from_pylist(batch, schema=PARQUET_SCHEMA))
            count += len(batch)
    return count


WRITERS: dict[ExportFormat, Callable[[Iterable[dict[str, Any]], BinaryIO], int]] = {
    ExportFormat.jsonl: write_jsonl,
    ExportFormat.csv: write_csv,
    ExportFormat.parquet: write_parquet,
}


def export(
    session: Session,
    output: BinaryIO,
    export_format: ExportFormat,
    *,
    since: date | None = None,
    province: str | None = None,
    relevant: bool | None = None,
    bom: bool = False,
) -> int:
    """Write the matching articles to ``output`` in ``export_format`` (CSV with a byte order
    mark if ``bom``); returns the row count."""
    records = export_records(session, since=since, province=province, relevant=relevant)
    if export_format is ExportFormat.csv:
        return write_csv(records, output, bom=bom)
    return WRITERS[export_format](records, output)


def _csv_cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value
