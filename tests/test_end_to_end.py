"""The whole chain through the CLI: `dtmon crawl --via` over the offline mirror at t1 and t2.

Stored articles must be exactly the gold ones of each moment, once each under their canonical
URL, with every alternate URL resolved to that one row, and re-crawling adds nothing. The
module runs once on SQLite and once on PostgreSQL (``module_database_url``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.mirror import MirrorServer
from tests.fixtures.shared_data import REPO_ROOT

MIRRORED_SOURCES = ["vov", "hungyen", "baohungyen", "quangninh", "hagiang", "hue", "dongnai"]


@dataclass
class Crawl:
    """One `dtmon crawl` run: its output and the articles stored after it."""

    returncode: int
    output: str
    articles: list[dict]


class DtmonCli:
    """Runs `dtmon` commands against one database and one mirror server."""

    def __init__(self, database_url: str, workdir: Path, mirror: MirrorServer) -> None:
        self.env = {**os.environ, "DTMON_DATABASE_URL": database_url, "COLUMNS": "160"}
        self.workdir = workdir
        self.mirror = mirror

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=self.workdir,
                              env=self.env, capture_output=True, text=True, timeout=300)

    def crawl(self) -> Crawl:
        args = ["crawl", "--via", self.mirror.url]
        for name in MIRRORED_SOURCES:
            args += ["--source", name]
        done = self.run(*args)
        listed = self.run("articles", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        articles = [json.loads(line) for line in listed.stdout.splitlines()]
        return Crawl(done.returncode, done.stdout + done.stderr, articles)


@pytest.fixture(scope="module")
def crawls(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Crawl at t1, then t2, then t2 again, into one fresh database of each backend."""
    sites = REPO_ROOT.parent / "shared" / "sites"
    if not (sites / "manifest.json").exists():
        pytest.skip(f"offline mirror not found at {sites}")
    workdir = tmp_path_factory.mktemp("e2e")
    with MirrorServer(sites, snapshot="t1") as mirror:
        cli = DtmonCli(module_database_url, workdir, mirror)
        results = {"t1": cli.crawl()}
        mirror.set_snapshot("t2")
        results["t2"] = cli.crawl()
        results["t2-again"] = cli.crawl()
        yield {**results, "cli": cli}


def _by_url(articles: list[dict]) -> dict[str, dict]:
    return {article["url"]: article for article in articles}


def test_t1_stores_exactly_the_t1_gold_articles_once(crawls, gold):
    crawl = crawls["t1"]
    assert crawl.returncode == 0, crawl.output
    expected = sorted(g["url"] for g in gold.values() if g["snapshot"] == "t1")
    stored = [article["url"] for article in crawl.articles]
    assert sorted(stored) == expected  # once each, nothing else (no anti-bot page)


def test_every_alternate_url_resolves_to_the_one_stored_row(crawls, gold):
    cli, by_url = crawls["cli"], _by_url(crawls["t2"].articles)
    for item in gold.values():
        stored_id = by_url[item["url"]]["id"]
        for alternate in item["alternate_urls"]:
            shown = cli.run("articles", "show", alternate, "--json")
            assert shown.returncode == 0, shown.stderr
            assert json.loads(shown.stdout)["id"] == stored_id, alternate


def test_stored_urls_are_the_real_ones_never_the_mirror(crawls):
    for article in crawls["t2"].articles:
        for url in [article["url"], *article["urls"]]:
            assert "127.0.0.1" not in url and url.startswith(("http://", "https://"))


def test_the_anti_bot_page_is_not_stored(crawls):
    urls = {url for article in crawls["t2"].articles for url in article["urls"]}
    assert "https://vov.vn/xa-hoi/trang-bi-chan-kiem-tra-post1155790.vov" not in urls


def test_t2_adds_exactly_the_five_new_articles(crawls, gold):
    crawl = crawls["t2"]
    assert crawl.returncode == 0, crawl.output
    before = {article["url"] for article in crawls["t1"].articles}
    added = sorted(article["url"] for article in crawl.articles if article["url"] not in before)
    assert added == sorted(g["url"] for g in gold.values() if g["snapshot"] == "t2")
    assert len(added) == 5
    assert "5 new article(s) stored" in crawl.output


def test_crawling_again_stores_nothing_and_says_so(crawls):
    crawl = crawls["t2-again"]
    assert crawl.returncode == 0, crawl.output
    assert len(crawl.articles) == len(crawls["t2"].articles)
    assert "Nothing new" in crawl.output


def test_stored_metadata_matches_gold(crawls, gold):
    by_url = _by_url(crawls["t2"].articles)
    for key, item in gold.items():
        article = by_url[item["url"]]
        assert article["title"] == item["title"], key
        # Exact times are checked against the pages in test_extraction_gold.py.
        assert article["published"][:10] == item["published"][:10], key
        assert article["province"] == item["province"], key
        if item["author"]:
            assert article["author"] == item["author"], key
