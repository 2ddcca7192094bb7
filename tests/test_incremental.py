"""Incremental crawling on the offline mirror: crawl at t1, switch to t2, crawl again.

The second crawl must not request any stored article, must get 304 for the feeds, sitemaps
and listing pages that did not change, must fetch exactly the five new articles, and its run
record must say so. Crawls run as `dtmon crawl` does: a child process, a real database; the
module runs once on SQLite and once on PostgreSQL (``module_database_url``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crawler.urls import url_key
from monitor.crawling import CrawlOptions, run_crawl
from monitor.mirror import MirrorServer, RequestRecord
from monitor.records import run_record
from storage import repository
from storage.db import init_db, make_engine, session_factory
from storage.models import FetchState

MIRRORED = ["vov", "hungyen", "baohungyen", "quangninh", "hagiang", "hue", "dongnai"]
# Tests measure behaviour, not politeness: no delay between requests to the local mirror.
FAST = {"DOWNLOAD_DELAY": "0", "AUTOTHROTTLE_ENABLED": "0"}
UNCHANGED_AT_T2 = [
    "https://hue.gov.vn/vi-vn/Tin-tuc-su-kien/Chuyen-doi-so",
    "https://baohungyen.vn/rss/home.rss",
    "https://vov.vn/sitemaps/2025/2/article.xml",
]


@dataclass
class Crawl:
    """One crawl: the requests the mirror answered and the run record."""

    requests: list[RequestRecord]
    record: dict


class Crawler:
    """Crawls the mirror into one database, one child process per crawl."""

    def __init__(self, url: str, mirror: MirrorServer) -> None:
        self.url = url
        self.engine = make_engine(self.url)
        init_db(self.engine)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        self.mirror = mirror

    def crawl(self, sources: list[str] = MIRRORED, refresh: bool = False) -> Crawl:
        self.mirror.clear_log()
        outcome = run_crawl(CrawlOptions(sources=sources, via=self.mirror.url, refresh=refresh,
                                         extra_settings=FAST), self.sessions, self.url)
        assert outcome.status == "ok", outcome.log_path.read_text()
        with self.sessions() as session:
            record = run_record(repository.get_run(session, outcome.run_id))
        return Crawl(list(self.mirror.requests), record)


@pytest.fixture(scope="module")
def crawls(module_database_url: str, sites_dir: Path) -> Iterator[dict]:
    """t1, then t2, then t2 again, into one fresh database of each backend."""
    with MirrorServer(sites_dir, snapshot="t1") as mirror:
        crawler = Crawler(module_database_url, mirror)
        results = {"t1": crawler.crawl()}
        mirror.set_snapshot("t2")
        results["t2"] = crawler.crawl()
        results["t2-again"] = crawler.crawl()
        yield {**results, "crawler": crawler}
        crawler.engine.dispose()


def _gold_keys(gold: dict[str, dict], snapshot: str) -> set[str]:
    return {url_key(url) for item in gold.values() if item["snapshot"] == snapshot
            for url in [item["url"], *item["alternate_urls"]]}


def _totals(record: dict) -> dict[str, int]:
    return {name: sum(source[name] for source in record["sources"])
            for name in ("articles_new", "articles_seen", "not_modified", "errors")}


def test_second_crawl_requests_no_stored_article(crawls, gold):
    requested = {url_key(r.url) for r in crawls["t2"].requests}
    assert not requested & _gold_keys(gold, "t1")


def test_second_crawl_fetches_exactly_the_five_new_articles(crawls, gold):
    all_articles = _gold_keys(gold, "t1") | _gold_keys(gold, "t2")
    fetched = {url_key(r.url) for r in crawls["t2"].requests if r.status == 200} & all_articles
    new = {url_key(item["url"]) for item in gold.values() if item["snapshot"] == "t2"}
    assert len(new) == 5
    assert fetched == new


def test_unchanged_feeds_sitemaps_and_listings_answer_304(crawls):
    answers = {r.url: (r.status, r.conditional) for r in crawls["t2"].requests}
    for url in UNCHANGED_AT_T2:
        assert answers[url] == (304, True), url


def test_run_record_says_five_new_and_what_was_not_modified(crawls):
    totals = _totals(crawls["t2"].record)
    assert totals == {"articles_new": 5, "articles_seen": 0,
                      "not_modified": len(UNCHANGED_AT_T2), "errors": 0}
    by_source = {s["source"]: s for s in crawls["t2"].record["sources"]}
    assert by_source["hue"]["not_modified"] == 1 and by_source["hue"]["pages_fetched"] == 0


def test_a_third_crawl_gets_304_everywhere_and_fetches_nothing(crawls):
    crawl = crawls["t2-again"]
    discovery = [r for r in crawl.requests if not r.url.endswith("/robots.txt")]
    assert _totals(crawl.record)["articles_new"] == 0
    conditional = [r for r in discovery if r.conditional]
    assert conditional and all(r.status == 304 for r in conditional)
    # Only pages whose validators were never saved are fetched again: the anti-bot page (never
    # stored) and pages answered 404 or by POST (no conditional request for those).
    assert all(r.method == "POST" or r.status != 200 or "trang-bi-chan" in r.url
               for r in discovery if not r.conditional)


def test_validators_are_saved_only_for_feeds_sitemaps_and_listings(crawls, gold):
    with crawls["crawler"].sessions() as session:
        saved = {url_key(url) for url in session.scalars(select(FetchState.url))}
    assert {url_key(url) for url in UNCHANGED_AT_T2} <= saved
    assert not saved & (_gold_keys(gold, "t1") | _gold_keys(gold, "t2"))


def test_refresh_refetches_stored_articles_without_conditional_requests(crawls, gold):
    crawl = crawls["crawler"].crawl(sources=["hue"], refresh=True)
    assert not any(r.conditional for r in crawl.requests)
    hue_articles = {url_key(item["url"]) for item in gold.values() if item["host"] == "hue.gov.vn"}
    assert hue_articles <= {url_key(r.url) for r in crawl.requests}
    assert _totals(crawl.record)["articles_new"] == 0  # seen again, not stored twice
    assert _totals(crawl.record)["articles_seen"] == len(hue_articles)
