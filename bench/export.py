"""`dtmon export` in constant memory: peak RSS at 100,000 and 1,000,000 rows, per format.

A SQLite database of ``DTMON_BENCH_EXPORT_ROWS`` articles (default 1,000,000, 10,000 with
``--quick``; ~800-character Vietnamese bodies, two URLs each, 50 sources) is built once in a
temporary folder. Each export runs `dtmon export` in a fresh child process and reads that
child's peak resident set size (bench/memory.py); the small export selects the newest tenth with
``--since``. Flat memory means the peak at the full size stays the same as at a tenth of it
(ratio ~1), whatever the row count.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from bench.memory import wait_with_peak
from storage.db import init_db, make_engine, session_factory, session_scope
from storage.models import Article, ArticleUrl, Source

QUICK = os.environ.get("DTMON_BENCH_QUICK") == "1"  # python -m bench --quick
ROWS = int(os.environ.get("DTMON_BENCH_EXPORT_ROWS", "10000" if QUICK else "1000000"))
SOURCES = 50
INSERT_BATCH = 20_000
START = datetime(2020, 1, 1)
FORMATS = ("jsonl", "csv", "parquet")
SENTENCES = [
    "Tỉnh đẩy mạnh chuyển đổi số trong cơ quan nhà nước, xây dựng chính quyền số.",
    "Người dân nộp hồ sơ trực tuyến toàn trình qua Cổng dịch vụ công quốc gia.",
    "Tổ công nghệ số cộng đồng hướng dẫn bà con cài đặt ứng dụng định danh điện tử.",
    "Hệ thống họp trực tuyến được triển khai đến 100% xã, phường, thị trấn.",
    "Kinh tế số đóng góp ngày càng lớn vào tăng trưởng của địa phương.",
    "Sở Thông tin và Truyền thông tổ chức tập huấn kỹ năng số cho cán bộ.",
]


def build_database(path: Path, rows: int) -> str:
    """A migrated SQLite file holding ``rows`` synthetic articles; returns its URL."""
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    init_db(engine)
    with session_scope(session_factory(engine)) as session:
        session.execute(insert(Source), [
            {"id": n + 1, "name": f"source{n}", "province": f"Tỉnh {n % 34}", "created_at": START}
            for n in range(SOURCES)
        ])
    html = zlib.compress(b"<html><body>" + b"x" * 4000 + b"</body></html>")
    for first in range(1, rows + 1, INSERT_BATCH):
        ids = range(first, min(first + INSERT_BATCH, rows + 1))
        with session_scope(session_factory(engine)) as session:
            session.execute(insert(Article), [_article(i, html) for i in ids])
            session.execute(insert(ArticleUrl), [
                {"article_id": i, "url": f"https://m.source{i % SOURCES}.vn/bai-{i}.html"}
                for i in ids
            ])
    engine.dispose()
    return url


def _article(i: int, html: bytes) -> dict:
    url = f"https://source{i % SOURCES}.vn/bai-{i}.html"
    body = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(11))
    moment = START + timedelta(minutes=i)
    return {
        "id": i, "source_id": i % SOURCES + 1, "url": url, "url_key": url,
        "title": f"Chuyển đổi số: bài số {i}", "text": f"{body} Mã bài {i}.",
        "published": moment.isoformat() + "+07:00", "published_at": moment - timedelta(hours=7),
        "province": f"Tỉnh {i % 34}", "tags": ["chuyển đổi số"], "raw_html": html,
        "content_hash": f"{i:064x}", "fetched_at": moment, "relevant": i % 3 != 0,
        "topic_score": 1.5, "topic_matches": {"chuyển đổi số": 2, "chính quyền số": 1},
    }


def export_in_child(url: str, export_format: str, since: str, output: Path) -> dict:
    """Run `dtmon export` in a child; its rows, seconds, peak RSS (MiB) and file size (MiB)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "monitor", "export", "--since", since, "--format", export_format,
         "--output", str(output)],
        env={**os.environ, "DTMON_DATABASE_URL": url}, stderr=subprocess.PIPE, text=True,
    )
    peak_mib = wait_with_peak(child)
    seconds = time.perf_counter() - started
    message = child.stderr.read()
    if child.returncode != 0:
        raise RuntimeError(f"dtmon export failed: {message}")
    return {
        "rows": int(message.split()[0]),
        "seconds": seconds,
        "peak_rss_mib": peak_mib,
        "file_mib": output.stat().st_size / 2**20,
    }


def run() -> list[dict]:
    """Peak RSS and speed of each format at a tenth of ``ROWS`` and at ``ROWS``."""
    results = []
    with tempfile.TemporaryDirectory(prefix="dtmon-bench-export-") as folder:
        started = time.perf_counter()
        url = build_database(Path(folder) / "dtmon.db", ROWS)
        results.append({"metric": f"build {ROWS:,} articles", "unit": "s",
                        "value": round(time.perf_counter() - started, 1)})
        newest_tenth = (START + timedelta(minutes=ROWS * 9 // 10)).date().isoformat()
        for export_format in FORMATS:
            output = Path(folder) / f"export.{export_format}"
            small = export_in_child(url, export_format, newest_tenth, output)
            full = export_in_child(url, export_format, "2000-01-01", output)
            results += [
                {"metric": f"{export_format}: peak RSS at {small['rows']:,} rows",
                 "value": round(small["peak_rss_mib"], 1), "unit": "MiB"},
                {"metric": f"{export_format}: peak RSS at {full['rows']:,} rows",
                 "value": round(full["peak_rss_mib"], 1), "unit": "MiB",
                 "ratio": round(full["peak_rss_mib"] / small["peak_rss_mib"], 2),
                 "target": "ratio <= 1.2 (flat)"},
                {"metric": f"{export_format}: speed at {full['rows']:,} rows",
                 "value": round(full["rows"] / full["seconds"]), "unit": "rows/s"},
                {"metric": f"{export_format}: file size at {full['rows']:,} rows",
                 "value": round(full["file_mib"], 1), "unit": "MiB"},
            ]
    return results


if __name__ == "__main__":
    for row in run():
        print(row)
