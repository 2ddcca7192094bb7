"""Nothing lost, nothing stuck: every article that failed is fetched again, every failure is seen.

* Each fault of the hostile web on one article of every mirrored host at t1, then one clean
  crawl: every gold article is stored, although the listings answer 304 and list only stored
  articles by then (the owed list brings the faulted ones back). bench/heal.py repeats it with
  random placements.
* A small site served by the mirror server (written here, not the offline mirror) for the
  silent drops: a year-0001 date, a 2,100-character URL, a URL over the crawler's bound, an
  exception while storing one article; and a listing of 5,000 links under the per-source cap.
* The owed list itself: thousands of links owed in bulk, each keeping its attempts and
  history, and giving up said once.

The silent drops and the cap run on SQLite and on PostgreSQL; the fault matrix, whose subject
is the crawl, on SQLite.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from bench.heal import FAST, FAULTS, heal_round, t1_gold_by_host
from crawler.urls import MAX_URL_LENGTH, url_key
from monitor.crawling import CrawlOptions, run_crawl
from monitor.mirror import MirrorServer
from monitor.records import run_record
from storage import repository
from storage.db import init_db, make_engine, session_factory
from storage.models import Article
from tests.fixtures.database import SQLITE_ONLY
from tests.fixtures.shared_data import REPO_ROOT

HOST = "so-thu-nghiem.gov.vn"
LISTING = f"https://{HOST}/tin-tuc/chuyen-doi-so"
NO_DATE = f"https://{HOST}/tin-tuc/nguoi-dan-lam-thu-tuc-tren-cong-dich-vu-cong-c100001.html"
LONG = (f"https://{HOST}/tin-tuc/tap-huan-ky-nang-so-cho-can-bo-cap-xa-c100002.html?ref="
        + "a1b2" * 600)[:2100]
TOO_LONG = f"https://{HOST}/tin-tuc/ban-tin-qua-dai-c100004.html?ref=" + "z" * MAX_URL_LENGTH
FAILING = f"https://{HOST}/tin-tuc/mo-hinh-cho-so-tai-cac-phuong-c100003.html"
INJECTED = "injected storage failure"


# ---------------------------------------------------------------------------- healing


@SQLITE_ONLY
@pytest.mark.parametrize("fault", list(FAULTS.values()), ids=list(FAULTS))
def test_a_fault_on_one_article_of_each_host_heals_in_one_clean_crawl(
        fault: str, database_url: str, sites_dir: Path) -> None:
    placement = {urls[0]: fault for urls in t1_gold_by_host(sites_dir).values()}
    faulted = {url_key(url) for url in placement}
    result = heal_round(sites_dir, database_url, placement)
    assert not faulted & result.stored_after_faulty  # nothing partial or bogus stored
    assert faulted <= result.owed_after_faulty  # each one owed
    assert result.not_modified_in_clean > 0  # 304 listings stay on
    assert result.stored_after_clean == result.gold, sorted(result.missing)
    assert not result.owed_after_clean & result.gold


# ---------------------------------------------------------------------------- a small site


def _article(title: str, meta: str = "") -> bytes:
    paragraphs = "".join(
        f"<p>{html.escape(title)}: đoạn {n} nói về việc đưa dịch vụ công trực tuyến đến từng "
        f"thôn, bản, hướng dẫn người dân cài đặt ứng dụng và thanh toán không dùng tiền mặt "
        f"tại điểm giao dịch số {n}.</p>" for n in range(1, 6))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{meta}<title>{html.escape(title)}"
            f"</title></head><body><header><a href='/'>Trang chủ</a></header><article>"
            f"<h1>{html.escape(title)}</h1><div class='content'>{paragraphs}</div></article>"
            f"<footer>Sở thử nghiệm</footer></body></html>").encode()


def _listing(links: list[tuple[str, str]]) -> bytes:
    items = "".join(f"<li class='news-item'><a href='{html.escape(url)}'>{html.escape(title)}"
                    f"</a></li>" for url, title in links)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Chuyển đổi số</title>"
            f"</head><body><h1>Chuyển đổi số</h1><ul class='news-list'>{items}</ul>"
            f"</body></html>").encode()


def write_site(root: Path, pages: dict[str, bytes]) -> Path:
    """A mirror folder serving ``pages`` (URL → HTML) at t1, and a sources file for it."""
    resources = []
    for number, (url, body) in enumerate(pages.items()):
        (root / f"{number}.html").write_bytes(body)
        headers = {"Content-Type": "text/html; charset=utf-8"}
        if url == LISTING:
            headers["ETag"] = '"listing-1"'
        resources.append({"url": url, "method": "GET", "snapshots": ["t1"], "status": 200,
                          "headers": headers, "file": f"{number}.html"})
    (root / "manifest.json").write_text(json.dumps({"snapshots": ["t1"],
                                                    "resources": resources}))
    sources = root / "sources.yaml"
    sources.write_text(f"sources:\n  - {{name: thunghiem, start_urls: ['{LISTING}']}}\n")
    return sources


class Site:
    """The small site, its mirror server and a database to crawl it into."""

    def __init__(self, root: Path, database_url: str, pages: dict[str, bytes]) -> None:
        self.sources = write_site(root, pages)
        self.mirror = MirrorServer(root).start()
        self.database_url = database_url
        self.engine = make_engine(database_url)
        init_db(self.engine)
        self.sessions = session_factory(self.engine)

    def dtmon(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DTMON_DATABASE_URL": self.database_url, "COLUMNS": "200",
               "PYTHONPATH": str(REPO_ROOT)}
        return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=REPO_ROOT, env=env,
                               capture_output=True, text=True, timeout=180)

    def crawl(self, **settings: str) -> dict:
        outcome = run_crawl(CrawlOptions(sources=["thunghiem"], sources_files=[self.sources],
                                         via=self.mirror.url,
                                         extra_settings={**FAST, **settings}),
                            self.sessions, self.database_url)
        assert outcome.status == "ok", outcome.log_path.read_text()
        with self.sessions() as session:
            return run_record(repository.get_run(session, outcome.run_id))["sources"][0]

    def stored(self) -> dict[str, Article]:
        with self.sessions() as session:
            return {a.url: a for a in session.scalars(select(Article))}

    def owed(self) -> dict[str, dict]:
        return {record["url"]: record for record in map(json.loads, self.dtmon(
            "pending", "--json").stdout.splitlines())}

    def close(self) -> None:
        self.mirror.stop()
        self.engine.dispose()


@pytest.fixture
def hostile_site(tmp_path: Path, database_url: str):
    pages = {
        LISTING: _listing([(NO_DATE, "Người dân làm thủ tục trên Cổng dịch vụ công"),
                           (LONG, "Tập huấn kỹ năng số cho cán bộ cấp xã"),
                           (FAILING, "Mô hình chợ số tại các phường"),
                           (TOO_LONG, "Bản tin có địa chỉ quá dài")]),
        NO_DATE: _article("Người dân làm thủ tục trên Cổng dịch vụ công",
                          '<meta property="article:published_time" '
                          'content="0001-01-01T00:00:00+07:00">'),
        LONG: _article("Tập huấn kỹ năng số cho cán bộ cấp xã"),
        FAILING: _article("Mô hình chợ số tại các phường"),
    }
    site = Site(tmp_path, database_url, pages)
    yield site
    site.close()


def _fail_storing(site: Site, fragment: str) -> None:
    """A database trigger that makes storing the article whose URL holds ``fragment`` fail."""
    with site.engine.begin() as connection:
        if site.engine.dialect.name == "sqlite":
            connection.execute(text(
                f"CREATE TRIGGER fail_one BEFORE INSERT ON articles WHEN NEW.url LIKE "
                f"'%{fragment}%' BEGIN SELECT RAISE(ABORT, '{INJECTED}'); END"))
        else:
            connection.execute(text(
                "CREATE FUNCTION fail_one() RETURNS trigger AS $$ BEGIN IF NEW.url LIKE "
                f"'%{fragment}%' THEN RAISE EXCEPTION '{INJECTED}'; END IF; RETURN NEW; END "
                "$$ LANGUAGE plpgsql"))
            connection.execute(text("CREATE TRIGGER fail_one BEFORE INSERT ON articles FOR EACH "
                                    "ROW EXECUTE FUNCTION fail_one()"))


def _stop_failing(site: Site) -> None:
    with site.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER fail_one" if site.engine.dialect.name == "sqlite"
                                else "DROP TRIGGER fail_one ON articles"))


def test_no_article_is_dropped_silently(hostile_site: Site) -> None:
    site = hostile_site
    _fail_storing(site, "c100003")
    done = site.dtmon("crawl", "--via", site.mirror.url, "--sources", str(site.sources),
                      "--source", "thunghiem")
    stored = site.stored()
    # The "no date" placeholder is a missing date, not a reason to drop the article.
    assert stored[NO_DATE].published is None and stored[NO_DATE].published_at is None
    # A 2,100-character URL fits every URL column, on both backends.
    assert LONG in stored and len(LONG) == 2100
    # The article whose storing raised is owed, and the run and its summary name it.
    assert FAILING not in stored
    owed = site.owed()
    assert INJECTED in owed[FAILING]["last_error"] and owed[FAILING]["attempts"] == 1
    assert owed[FAILING]["found_on"] == LISTING
    with site.sessions() as session:
        record = run_record(repository.list_runs(session, limit=1)[0])["sources"][0]
    messages = "\n".join(record["error_messages"])
    assert FAILING in messages and INJECTED in messages
    assert FAILING in done.stdout, done.stdout
    # The URL over the bound is refused and counted, not sent to the database.
    assert record["stats"]["url_too_long"] == 1 and "longer than 2500" in messages
    assert record["errors"] == 2, messages
    # Healthy again: the next crawl stores the owed article although the listing answers 304.
    _stop_failing(site)
    again = site.crawl()
    assert again["not_modified"] == 1 and FAILING in site.stored()
    assert FAILING not in site.owed()


def test_a_listing_of_5000_links_is_capped_per_source_and_the_rest_is_owed(
        tmp_path: Path, database_url: str) -> None:
    links = [(f"https://{HOST}/tin-tuc/ban-tin-chuyen-doi-so-so-{n}-c{200000 + n}.html",
             f"Bản tin chuyển đổi số số {n} của tỉnh") for n in range(5000)]
    pages = {LISTING: _listing(links)}
    pages |= {url: _article(title) for url, title in links[:30]}
    site = Site(tmp_path, database_url, pages)
    try:
        first = site.crawl(DTMON_MAX_ARTICLES_PER_SOURCE="20")
        assert first["stats"]["links_found"] == 5000
        assert first["stats"]["articles_requested"] == 20
        assert first["stats"]["deferred"] == 4980 and first["errors"] == 0
        assert len(site.stored()) == 20
        with site.sessions() as session:
            owed = repository.owed_counts(session)["thunghiem"]
        assert owed == {"owed": 4980, "gave_up": 0}
        pending = site.owed()  # what `dtmon pending --json` shows
        assert len(pending) == 4980 and links[0][0] not in pending
        last = pending[links[-1][0]]
        assert (last["found_on"], last["attempts"], last["state"]) == (LISTING, 0, "owed")
        assert "over the cap of 20" in last["last_error"]
        second = site.crawl(DTMON_MAX_ARTICLES_PER_SOURCE="20")  # the backlog, 20 at a time
        assert second["stats"]["owed_retried"] == 20 and len(site.stored()) == 30
    finally:
        site.close()


def test_owing_thousands_in_bulk_keeps_each_articles_history(session: Session) -> None:
    policy = repository.OwedPolicy(max_attempts=2)
    page1, page2 = LISTING, f"{LISTING}?page=2"
    links = [repository.OwedLink("thunghiem", f"https://{HOST}/tin-{n}.html", f"key-{n}", page1)
             for n in range(1200)]  # more than one IN-clause chunk
    deferred = repository.owe_articles(session, [*links, links[0]], error="deferred: over the cap",
                                       attempted=False, policy=policy)
    session.commit()
    assert deferred == []
    assert repository.owed_counts(session) == {"thunghiem": {"owed": 1200, "gave_up": 0}}
    assert len(repository.due_owed(session, "thunghiem", 5000)) == 1200  # due at the next run

    # The first one failed once; then all are deferred again, by another page.
    first = dataclasses.replace(links[0], found_on=page2)
    assert repository.owe_articles(session, [first], error="HTTP 503", attempted=True,
                                   policy=policy) == []
    repository.owe_articles(session, [dataclasses.replace(link, found_on=page2)
                                      for link in links[:600]],
                            error="deferred again", attempted=False, policy=policy)
    session.commit()
    owed = {row.url_key: row for row in repository.list_owed(session, "thunghiem")}
    assert len(owed) == 1200
    assert (owed["key-0"].attempts, owed["key-0"].last_error) == (1, "deferred again")
    assert (owed["key-1"].found_on, owed["key-1"].last_error) == (page2, "deferred again")
    assert (owed["key-999"].found_on, owed["key-999"].attempts) == (page1, 0)

    # A second failure reaches max_attempts: given up, said once.
    gave_up = repository.owe_articles(session, [first], error="HTTP 503", attempted=True,
                                      policy=policy)
    assert [row.url_key for row in gave_up] == ["key-0"]
    assert repository.owe_articles(session, [first], error="HTTP 503", attempted=True,
                                   policy=policy) == []
    session.commit()
    assert repository.owed_counts(session) == {"thunghiem": {"owed": 1199, "gave_up": 1}}
