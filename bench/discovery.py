"""Bounded work per page and per source: a listing of 5,000 links.

* Link discovery (``crawler.discovery.find_article_links``) on listings of 1,000, 2,000 and
  5,000 links, best of three passes: it must stay linear (before: 250 / 500 / 1,000 / 2,000
  links took 0.18 / 0.59 / 2.36 / 9.10 s) and take under a second at 5,000.
* A crawl of the offline mirror's seven sources, alone and then with an eighth source whose
  listing holds 5,000 links, in the same crawl: how much longer the crawl takes, and that the
  per-source cap (``DTMON_MAX_ARTICLES_PER_SOURCE``, default 200) holds.

    .venv/bin/python -m bench discovery
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from crawler.discovery import find_article_links
from monitor.crawling import CrawlOptions, run_crawl
from monitor.mirror import DEFAULT_MIRROR_PATH, MirrorServer
from monitor.records import run_record
from storage import repository
from storage.db import init_db, make_engine, session_factory

QUICK = os.environ.get("DTMON_BENCH_QUICK") == "1"
SIZES = (100, 500) if QUICK else (1000, 2000, 5000)
BIG = 500 if QUICK else 5000
MIRRORED = ["vov", "hungyen", "baohungyen", "quangninh", "hagiang", "hue", "dongnai"]
FAST = {"DOWNLOAD_DELAY": "0", "AUTOTHROTTLE_ENABLED": "0"}
HOST = "so-thu-nghiem.gov.vn"
LISTING = f"https://{HOST}/tin-tuc/chuyen-doi-so"


def listing_page(links: int) -> bytes:
    """A portal listing of ``links`` article links in cards, with a menu and a footer."""
    cards = "".join(
        f"<div class='card'><a href='/tin-tuc/ban-tin-chuyen-doi-so-so-{n}-c{200000 + n}.html'>"
        f"Bản tin chuyển đổi số số {n} của tỉnh</a><p class='date'>01/07/2025</p></div>"
        for n in range(links))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Chuyển đổi số</title>"
            f"</head><body><nav class='menu'><a href='/'>Trang chủ</a><a href='/lien-he'>Liên "
            f"hệ</a></nav><h1>Chuyển đổi số</h1><div class='list'>{cards}</div>"
            f"<footer>Cổng thông tin</footer></body></html>").encode()


def discovery_seconds(links: int, passes: int = 3) -> tuple[float, int]:
    """Best time of ``passes`` discoveries on a listing of ``links`` links, and links found."""
    page = listing_page(links)
    best, found = float("inf"), 0
    for _ in range(passes):
        started = time.perf_counter()
        found = len(find_article_links(page, LISTING, {HOST}))
        best = min(best, time.perf_counter() - started)
    return best, found


def mirror_with_big_listing(root: Path, sites: Path) -> Path:
    """A mirror folder: the offline mirror plus a host whose listing has BIG links (the
    articles themselves answer 404); returns the sources file of that host."""
    manifest = json.loads((sites / "manifest.json").read_text("utf-8"))
    for entry in sites.iterdir():
        if entry.is_dir():
            (root / entry.name).symlink_to(entry)
    (root / "big.html").write_bytes(listing_page(BIG))
    manifest["resources"].append({
        "url": LISTING, "method": "GET", "snapshots": manifest["snapshots"], "status": 200,
        "headers": {"Content-Type": "text/html; charset=utf-8"}, "file": "big.html"})
    (root / "manifest.json").write_text(json.dumps(manifest))
    sources = root / "big-sources.yaml"
    sources.write_text(f"sources:\n  - {{name: thunghiem, start_urls: ['{LISTING}']}}\n")
    return sources


def crawl_seconds(root: Path, sources_file: Path, names: list[str]) -> tuple[float, dict]:
    """Wall time of one crawl of ``names`` into a fresh SQLite file, and its run record."""
    with tempfile.TemporaryDirectory(prefix="dtmon-discovery-") as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        engine = make_engine(url)
        init_db(engine)
        sessions = session_factory(engine)
        with MirrorServer(root, snapshot="t1") as mirror:
            started = time.monotonic()
            outcome = run_crawl(CrawlOptions(sources=names, sources_files=[sources_file],
                                             via=mirror.url, trigger="bench",
                                             extra_settings=FAST), sessions, url)
            seconds = time.monotonic() - started
        with sessions() as session:
            record = run_record(repository.get_run(session, outcome.run_id))
        engine.dispose()
    return seconds, record


def run() -> list[dict]:
    rows = []
    for links in SIZES:
        seconds, found = discovery_seconds(links)
        rows.append({"metric": f"discovery on a listing of {links:,} links (best of 3; "
                               f"{found:,} found)", "value": seconds, "unit": "s",
                     "target": "< 1 s at 5,000" if links == 5000 else None})
    with tempfile.TemporaryDirectory(prefix="dtmon-mirror-") as folder:
        root = Path(folder)
        sources = mirror_with_big_listing(root, DEFAULT_MIRROR_PATH)
        alone, _ = crawl_seconds(root, sources, MIRRORED)
        together, record = crawl_seconds(root, sources, [*MIRRORED, "thunghiem"])
    big = next(s for s in record["sources"] if s["source"] == "thunghiem")["stats"]
    rows += [
        {"metric": "crawl of the mirror's 7 sources, with an 8th whose listing has "
                   f"{BIG:,} links", "value": together, "unit": "s", "baseline": alone,
         "ratio": together / alone},
        {"metric": "that source: articles requested / deferred to the owed list (cap 200)",
         "value": f"{big.get('articles_requested', 0)} / {big.get('deferred', 0)}"},
    ]
    return rows
