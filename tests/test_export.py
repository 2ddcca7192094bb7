"""`dtmon export` on SQLite and PostgreSQL: every format read back, filters, clear errors."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from monitor.cli import app
from monitor.export import ExportFormat, export
from storage.db import session_factory, session_scope
from storage.repository import ArticleData, add_article

ARTICLES = [
    # (slug, province, published, relevant)
    ("hung-yen-cds", "Hưng Yên", "2026-03-02T08:00:00+07:00", True),
    ("hue-cds", "Huế", "2026-03-03", True),
    ("hue-le-hoi", "Huế", "2026-03-04", False),
    ("hue-cu", "Huế", "2026-02-27", True),
]


@pytest.fixture
def filled(engine: Engine) -> Engine:
    with session_scope(session_factory(engine)) as session:
        for slug, province, published, relevant in ARTICLES:
            url = f"https://{slug}.example.vn/bai.html"
            add_article(session, ArticleData(
                source_name=slug.split("-")[0], url=url, url_key=url, province=province,
                urls=[url + "?utm_source=zalo"], title=f"Chuyển đổi số — {slug}",
                text=f"Nội dung tiếng Việt của {slug}: \"trích dẫn\", dấu phẩy, xuống\ndòng.",
                published=published, tags=["chuyển đổi số"], relevant=relevant,
                topic_score=2.5 if relevant else 0.1, topic_matches={"chuyển đổi số": 2},
                raw_html=b"<html>...</html>",
            ))
    return engine


def _export(engine: Engine, export_format: ExportFormat, **filters) -> bytes:
    output = io.BytesIO()
    with session_factory(engine)() as session:
        export(session, output, export_format, **filters)
    return output.getvalue()


def _slugs(rows: list[dict]) -> list[str]:
    return [row["url"].split("//")[1].split(".")[0] for row in rows]


def test_jsonl_carries_every_field_and_vietnamese_text_intact(filled: Engine) -> None:
    rows = [json.loads(line) for line in _export(filled, ExportFormat.jsonl).splitlines()]
    assert _slugs(rows) == [slug for slug, *_ in ARTICLES]  # oldest id first
    first = rows[0]
    assert first["title"] == "Chuyển đổi số — hung-yen-cds"
    assert first["urls"] == [first["url"], first["url"] + "?utm_source=zalo"]
    assert first["matched"] == {"chuyển đổi số": 2} and first["source"] == "hung"
    assert "xuống\ndòng" in first["text"]


def test_filters_by_day_province_and_relevance(filled: Engine) -> None:
    raw = _export(filled, ExportFormat.jsonl, since=date(2026, 3, 1), province="Huế",
                  relevant=True)
    assert _slugs([json.loads(line) for line in raw.splitlines()]) == ["hue-cds"]


def test_csv_reads_back_in_a_spreadsheet_shape(filled: Engine) -> None:
    text = _export(filled, ExportFormat.csv).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == len(ARTICLES)
    assert rows[1]["province"] == "Huế"
    assert json.loads(rows[0]["tags"]) == ["chuyển đổi số"]
    assert "\"trích dẫn\"" in rows[0]["text"] and "xuống\ndòng" in rows[0]["text"]


def test_parquet_has_typed_columns(filled: Engine) -> None:
    table = pq.read_table(io.BytesIO(_export(filled, ExportFormat.parquet)))
    assert table.num_rows == len(ARTICLES)
    rows = table.to_pylist()
    assert rows[0]["relevant"] is True and rows[2]["relevant"] is False
    assert rows[0]["matched"] == [("chuyển đổi số", 2)]
    assert rows[1]["title"] == "Chuyển đổi số — hue-cds"


def test_cli_writes_a_file_and_refuses_bad_options(
    filled: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DTMON_DATABASE_URL", database_url)
    runner = CliRunner()
    target = tmp_path / "out.parquet"
    done = runner.invoke(app, ["export", "--since", "2026-03-01", "--relevant",
                               "--format", "parquet", "--output", str(target)])
    assert done.exit_code == 0, done.output
    assert pq.read_table(target).num_rows == 2

    bad_day = runner.invoke(app, ["export", "--since", "01/03/2026"])
    assert bad_day.exit_code == 1 and "YYYY-MM-DD" in bad_day.output
    no_file = runner.invoke(app, ["export", "--since", "2026-03-01", "--format", "parquet"])
    assert no_file.exit_code == 1 and "--output" in no_file.output
    bad_format = runner.invoke(app, ["export", "--since", "2026-03-01", "--format", "xml"])
    assert bad_format.exit_code == 2
