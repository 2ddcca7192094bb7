"""Bounded work per page and per source: a listing of 5,000 links.

* Link discovery (``crawler.discovery.find_article_links``) on listings of 1,000, 2,000 and
  5,000 links, best of three passes: it must stay linear (before: 250 / 500 / 1,000 / 2,000
  links took 0.18 / 0.59 / 2.36 / 9.10 s) and take under a second at 5,000.
* Real crawls (``dtmon crawl``'s child ``scrapy crawl news``, SQLite, the offline mirror served
  by the mirror server) of the mirror's seven sources, alone and together with an eighth
  source whose listing holds 5,000 links, alternately, three times each:

  - the spider's whole handling of that listing page (links, URL keys, the stored-keys
    lookup, the cap, owing the backlog), from its log line; Scrapy runs every callback on one
    thread, so this is how long every other source waits;
  - when the seven sources' last article is stored, counted from the start of the crawl:
    alone and together (medians), and the difference, the other sources' delay;
  - that the per-source cap (``DTMON_MAX_ARTICLES_PER_SOURCE``, default 200) holds: articles
    requested from the big source, and the rest owed in the database.

    .venv/bin/python -m bench discovery
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from sqlalchemy import func, select
from twisted.internet import task

from crawler.discovery import find_article_links
from crawler.spiders.news import DEFAULT_MAX_ARTICLES_PER_SOURCE
from monitor.crawling import CrawlOptions, run_crawl
from monitor.mirror import DEFAULT_MIRROR_PATH, MirrorServer
from monitor.records import run_record
from storage import repository
from storage.db import init_db, make_engine, session_factory
from storage.models import Article, Source

QUICK = os.environ.get("DTMON_BENCH_QUICK") == "1"
SIZES = (100, 500) if QUICK else (1000, 2000, 5000)
BIG = 500 if QUICK else 5000
REPEATS = 1 if QUICK else 3
CAP = DEFAULT_MAX_ARTICLES_PER_SOURCE
MIRRORED = ["vov", "hungyen", "baohungyen", "quangninh", "hagiang", "hue", "dongnai"]
TICK = 0.01
FAST = {"DOWNLOAD_DELAY": "0", "AUTOTHROTTLE_ENABLED": "0"}
MEASURED = {**FAST, "EXTENSIONS": json.dumps({f"{__name__}.ReactorStalls": 0})}
HOST = "so-thu-nghiem.gov.vn"
LISTING = f"https://{HOST}/tin-tuc/chuyen-doi-so"
_STALL_LOG = re.compile(r"reactor: longest stall ([0-9.]+) s")
# The spider's log line for a listing page: "... 200 new (0.41 s, CPU 0.38 s)".
_LISTING_LOG = re.compile(rf"\[thunghiem\] listing {re.escape(LISTING)} page 1: .* "
                          r"\(([0-9.]+) s, CPU ([0-9.]+) s\)")


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


class ReactorStalls:
    """A Scrapy extension of this benchmark (``-s EXTENSIONS=...``): the longest time the
    crawl's one reactor thread was busy, seen as the lateness of a call due every
    :data:`TICK` seconds, logged when the spider closes. Every source waits that long."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._last: float | None = None
        self._ticks = task.LoopingCall(self._tick)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ReactorStalls:
        stalls = cls()
        crawler.signals.connect(stalls.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(stalls.spider_closed, signal=signals.spider_closed)
        return stalls

    def spider_opened(self) -> None:
        self._ticks.start(TICK)

    def spider_closed(self, spider: Spider) -> None:
        self._ticks.stop()
        spider.logger.info("reactor: longest stall %.3f s", self.longest)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.longest = max(self.longest, now - self._last - TICK)
        self._last = now


@dataclass(frozen=True)
class Crawl:
    """What one crawl of the mirror showed."""

    others_done: float  # seconds from the start of the run to the last article of MIRRORED
    listing_seconds: float | None  # the spider's time on the big listing page, if crawled
    listing_cpu: float | None  # the CPU time it took (the machine's load aside)
    longest_stall: float  # the longest time the reactor thread was busy
    big: dict  # the big source's counters (empty when not crawled)
    owed: int  # owed articles of the big source in the database afterwards


def crawl(root: Path, sources_file: Path, names: list[str]) -> Crawl:
    """One crawl of ``names`` into a fresh SQLite file."""
    with tempfile.TemporaryDirectory(prefix="dtmon-discovery-") as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        engine = make_engine(url)
        init_db(engine)
        sessions = session_factory(engine)
        with MirrorServer(root, snapshot="t1") as mirror:
            outcome = run_crawl(CrawlOptions(sources=names, sources_files=[sources_file],
                                             via=mirror.url, trigger="bench",
                                             extra_settings=MEASURED), sessions, url)
        with sessions() as session:
            run = repository.get_run(session, outcome.run_id)
            last = session.scalar(select(func.max(Article.fetched_at)).join(Source)
                                  .where(Source.name.in_(MIRRORED)))
            others_done = (last - run.started_at).total_seconds()
            record = run_record(run)
            owed = repository.owed_counts(session).get("thunghiem", {}).get("owed", 0)
        engine.dispose()
        log = outcome.log_path.read_text("utf-8", "replace")
    big = next((s["stats"] for s in record["sources"] if s["source"] == "thunghiem"), {})
    timed, stall = _LISTING_LOG.search(log), _STALL_LOG.search(log)
    wall, cpu = (float(timed.group(1)), float(timed.group(2))) if timed else (None, None)
    return Crawl(others_done, wall, cpu, float(stall.group(1)) if stall else float("nan"), big,
                 owed)


def run() -> list[dict]:
    rows = []
    for links in SIZES:
        seconds, found = discovery_seconds(links)
        rows.append({"metric": f"discovery on a listing of {links:,} links (best of 3; "
                               f"{found:,} found)", "value": seconds, "unit": "s",
                     "target": "< 1 s at 5,000" if links == 5000 else None})
    alone: list[Crawl] = []
    together: list[Crawl] = []
    with tempfile.TemporaryDirectory(prefix="dtmon-mirror-") as folder:
        root = Path(folder)
        sources = mirror_with_big_listing(root, DEFAULT_MIRROR_PATH)
        for _ in range(REPEATS):
            alone.append(crawl(root, sources, MIRRORED))
            together.append(crawl(root, sources, [*MIRRORED, "thunghiem"]))
    listing = [c.listing_seconds for c in together if c.listing_seconds is not None]
    cpu = [c.listing_cpu for c in together if c.listing_cpu is not None]
    stalls = [max(c.longest_stall for c in runs) for runs in (together, alone)]
    before, after = (median(c.others_done for c in runs) for runs in (alone, together))
    capped = together[-1]
    return rows + [
        {"metric": f"spider's handling of that {BIG:,}-link listing page in a real crawl "
                   f"(links, URL keys, stored-keys lookup, cap, owing the backlog; median of "
                   f"{len(listing)}, max {max(listing, default=0):.2f} s)",
         "value": median(listing) if listing else None, "unit": "s", "target": "< 1 s"},
        {"metric": f"the same, CPU time of the spider process (median of {len(cpu)})",
         "value": median(cpu) if cpu else None, "unit": "s"},
        {"metric": "longest time the crawl's reactor thread was busy (every source waits; "
                   f"worst of {REPEATS} crawls), with the {BIG:,}-link source / without",
         "value": stalls[0], "unit": "s", "baseline": stalls[1], "target": "< 1 s"},
        {"metric": f"the mirror's 7 sources: last article stored, from the start of the crawl "
                   f"(median of {REPEATS}), with the {BIG:,}-link source in the same crawl",
         "value": after, "unit": "s", "baseline": before, "ratio": after / before},
        {"metric": "the other sources' delay (difference of the medians above)",
         "value": after - before, "unit": "s", "target": "≤ the page's handling, < 1 s"},
        {"metric": f"that source: articles requested / deferred / owed in the database "
                   f"(cap {CAP})",
         "value": f"{capped.big.get('articles_requested', 0)} / "
                  f"{capped.big.get('deferred', 0)} / {capped.owed}",
         "target": f"≤ {CAP} requested, the rest owed"},
    ]
