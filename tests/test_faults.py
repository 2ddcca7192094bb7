"""The hostile web: one crawl of the mirror with a fault on (almost) every article, then a
clean crawl that heals everything.

Each fault sits on its own URL (see FAULTS), so one faulty crawl shows them all: the crawl
completes, each fault that loses a page is reported under its source in the run record,
nothing partial or bogus is stored, and the next clean crawl stores exactly the gold set. The
two crawls run once on SQLite and once on PostgreSQL (``module_database_url``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from crawler.extraction import extract_article
from crawler.safety import refused_host, retry_after_seconds, xml_entity_refusal
from monitor.cli import app
from monitor.crawling import LOG_DIR_ENV
from monitor.faults import FaultSpecError, load_fault_plan, parse_rule
from monitor.mirror import MirrorServer, load_manifest
from storage.db import make_engine, session_factory
from storage.models import Article, CrawlRunSource

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["vov", "hungyen", "baohungyen", "quangninh", "hagiang", "hue", "dongnai"]
HUNGYEN = "https://hungyen.gov.vn/"
QUANGNINH = "https://www.quangninh.gov.vn/*nid="  # the listing links some lower-case
HAGIANG = "https://hagiang.gov.vn/vi/tin-tuc-su-kien/"
HUE = "https://hue.gov.vn/vi-vn/Tin-tuc-su-kien/tid/"

# URL glob → faults; "lost" faults keep the article out of this crawl, the others recover.
FAULTS = {
    f"{HUNGYEN}hoi-nghi-thuong-truc-*": "5xx:2",  # recovers within the retries
    f"{HUNGYEN}hung-yen-dua-he-thong-*": "5xx:9",  # lost: more failures than retries
    f"{HUNGYEN}nong-dan-hung-yen-*": "429:1:1,malformed-html",  # waits, then tag soup
    f"{QUANGNINH}428620": "timeout",  # lost
    f"{QUANGNINH}236318": "slow:0.3",
    f"{QUANGNINH}470868": "reset",  # lost
    f"{HAGIANG}hoi-nghi-truc-tuyen-*": "truncate",  # lost
    f"{HAGIANG}thu-tuong-*": "redirect-loop",  # lost
    f"{HAGIANG}ha-giang-mua-hoa-*": "charset:none",  # windows-1258 page, no label at all
    f"{HUE}Chuyen-Doi-So-*": "charset:iso-8859-1",  # UTF-8 page labelled Latin-1
    f"{HUE}Hue-S-Bo-Sung-*": "huge:50",  # lost
    f"{HUE}Festival-Hue-*": "gzip-bomb:200",  # lost
    "https://dongnai.gov.vn/vi/news/chuyen-doi-so/*": "redirect:http://169.254.169.254/x",
    "https://dongnai.gov.vn/vi/news/rss/": "malformed-xml",
    "https://baohungyen.vn/rss/home.rss": "xml-bomb",  # lost: the feed is refused
    "https://vov.vn/sitemap.xml": "xxe",
    "https://vov.vn/chinh-tri/*": "home",  # the listing page served in place of the article
    "https://vov.vn/kinh-te/*": "home:redirect",
    "https://vov.vn/": "home",
}
# What each lost page must leave in its source's error messages.
EXPECTED_ERRORS = {
    "hungyen": ["HTTP 503 at https://hungyen.gov.vn/hung-yen-dua-he-thong"],
    "quangninh": ["TimeoutError", "nid=428620", "nid=470868"],
    "hagiang": ["hoi-nghi-truc-tuyen", "thu-tuong-chuyen-doi-so"],
    "hue": ["Hue-S-Bo-Sung", "Festival-Hue"],
    "dongnai": ["not followed (redirected): private or loopback IP address '169.254.169.254'"],
    "baohungyen": ["XML entity declarations refused"],
    "vov": ["XML entity declarations refused", "listing page", "home page (ended at https://vov.vn/)"],
}
LOST = {
    "https://hungyen.gov.vn/hung-yen-dua-he-thong-hop-truc-tuyen-ve-den-100-xa-phuong-c9686276.html",
    "https://www.quangninh.gov.vn/Trang/ChiTietTinTuc.aspx?nid=428620",
    "https://www.quangninh.gov.vn/Trang/ChiTietTinTuc.aspx?nid=470868",
    "https://baohungyen.vn/hoi-nghi-thuong-truc-chinh-phu-ve-chuyen-doi-so-5001394.html",
}


@dataclass
class Crawl:
    returncode: int
    log: str
    articles: dict[str, Article]
    sources: dict[str, CrawlRunSource]


def scrapy_crawl(mirror: MirrorServer, database: str, workdir: Path, run: str) -> Crawl:
    """``scrapy crawl news`` of the mirrored sources through ``mirror`` into ``database``
    (logging into workdir), with short time-outs and back-off so that the faults cost seconds."""
    log = workdir / f"{run}.log"
    settings = {"DTMON_VIA": mirror.url, "DTMON_DATABASE_URL": database, "LOG_FILE": str(log),
                "AUTOTHROTTLE_ENABLED": "False", "DOWNLOAD_DELAY": "0", "DOWNLOAD_TIMEOUT": "1",
                "DTMON_RETRY_BACKOFF_BASE": "0.05", "DTMON_RETRY_AFTER_MAX": "5"}
    command = [sys.executable, "-m", "scrapy", "crawl", "news", "-a",
               "sources=" + ",".join(SOURCES)]
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    done = subprocess.run(command, cwd=REPO, env=dict(os.environ), capture_output=True,
                          text=True, timeout=240)
    engine = make_engine(database)
    with session_factory(engine)() as session:
        articles = {a.url: a for a in session.scalars(select(Article))}
        run_id = max(s.run_id for s in session.scalars(select(CrawlRunSource)))
        rows = session.scalars(select(CrawlRunSource).where(CrawlRunSource.run_id == run_id))
        sources = {row.source_name: row for row in rows}
    engine.dispose()
    return Crawl(done.returncode, log.read_text("utf-8") + done.stderr, articles, sources)


@pytest.fixture(scope="module")
def crawls(module_database_url: str, sites_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A faulty crawl at t1, then a clean one, into one fresh database of each backend."""
    workdir = tmp_path_factory.mktemp("faults")
    plan = load_fault_plan(f"{pattern}={faults}" for pattern, faults in FAULTS.items())
    with MirrorServer(sites_dir, snapshot="t1", faults=plan) as mirror:
        faulty = scrapy_crawl(mirror, module_database_url, workdir, "faulty")
        requests = list(mirror.requests)
    with MirrorServer(sites_dir, snapshot="t1") as mirror:
        clean = scrapy_crawl(mirror, module_database_url, workdir, "clean")
    yield {"faulty": faulty, "clean": clean, "requests": requests}


def _gold_t1(gold: dict[str, dict]) -> dict[str, dict]:
    return {g["url"]: g for g in gold.values() if g["snapshot"] == "t1"}


def test_the_faulty_crawl_completes(crawls):
    crawl = crawls["faulty"]
    assert crawl.returncode == 0, crawl.log[-3000:]
    assert "Traceback" not in crawl.log


def test_each_lost_page_is_reported_under_its_source(crawls):
    sources = crawls["faulty"].sources
    for name, fragments in EXPECTED_ERRORS.items():
        messages = "\n".join(sources[name].error_messages)
        assert sources[name].errors == len(sources[name].error_messages), messages
        for fragment in fragments:
            assert fragment in messages, (name, fragment, messages)


def test_nothing_partial_or_bogus_is_stored(crawls, gold, sites_dir):
    stored = crawls["faulty"].articles
    expected = _gold_t1(gold)
    assert set(stored) <= set(expected) - LOST  # no home page, redirect target or lost page
    _, resources = load_manifest(sites_dir)
    clean_page = {r.url: r.file for r in resources if r.method == "GET" and r.file}
    for url, article in stored.items():
        assert article.title == expected[url]["title"], url  # charset faults decoded right
        clean = extract_article(clean_page[url].read_bytes(), url).text
        assert article.text == clean, url  # complete, whatever the fault did on the way
    survivors = {f"{HUNGYEN}hoi-nghi-thuong-truc-chinh-phu-ve-chuyen-doi-so-c8524487.html",
                 f"{HUNGYEN}nong-dan-hung-yen-buoc-vao-vu-thu-hoach-nhan-long-c4837815.html",
                 "https://www.quangninh.gov.vn/Trang/ChiTietTinTuc.aspx?nid=236318",
                 f"{HAGIANG}ha-giang-mua-hoa-tam-giac-mach-thu-hut-du-khach-643898.html",
                 f"{HUE}Chuyen-Doi-So-Phai-Gan-Voi-Cai-Cach-Hanh-Chinh/newsid/6ACEBFEB-3DDB-"
                 "E6C1-CA14-F40F26BAC345/cid/1E5D21CD-3B48-3932-31E6-A6180589A745"}
    assert survivors <= set(stored)


def test_recovering_faults_cost_retries_not_articles(crawls):
    requests = [r for r in crawls["requests"] if "hoi-nghi-thuong-truc-chinh-phu" in r.url
                and r.url.startswith("https://hungyen")]
    assert [r.status for r in requests] == [503, 503, 200]
    too_many = [r.status for r in crawls["requests"] if "nong-dan-hung-yen" in r.url]
    assert too_many[:2] == [429, 200]


def test_no_request_ever_left_the_sources_hosts(crawls):
    hosts = {r.url.split("/")[2] for r in crawls["requests"]}
    assert not any(host[0].isdigit() or "localhost" in host for host in hosts), hosts
    assert all("passwd" not in r.url and "lol" not in r.url for r in crawls["requests"])


def test_the_clean_crawl_heals_everything(crawls, gold):
    crawl = crawls["clean"]
    assert crawl.returncode == 0, crawl.log[-3000:]
    expected = _gold_t1(gold)
    assert set(crawl.articles) == set(expected)
    for url, article in crawl.articles.items():
        assert article.title == expected[url]["title"], url
    healed = {row.source_name: row.errors for row in crawl.sources.values()}
    assert set(healed.values()) == {0}, healed


# ---------------------------------------------------------------------------- unit level


def test_fault_rules_parse_inline_and_from_files(tmp_path: Path):
    rule = parse_rule("https://x.vn/a?id=1=5xx:3,slow:0.5")
    assert rule.pattern == "https://x.vn/a?id=1"
    assert [str(f) for f in rule.faults] == ["5xx:3", "slow:0.5"]
    spec = tmp_path / "faults.yaml"
    spec.write_text("'https://x.vn/*': [reset, 'charset:none']\n'https://y.vn/': home\n")
    plan = load_fault_plan([str(spec)])
    assert [str(f) for f in plan.faults_for("https://x.vn/p")] == ["reset", "charset:none"]
    for bad in ("no-equals", "https://x.vn/=explode", "https://x.vn/=slow:soon"):
        with pytest.raises(FaultSpecError):
            parse_rule(bad)


def test_hosts_outside_the_source_are_refused():
    hosts = ["hue.gov.vn", "thuathienhue.gov.vn"]
    assert refused_host("https://www.hue.gov.vn/a", hosts) is None
    assert refused_host("http://thuathienhue.gov.vn/a", hosts) is None
    assert "not one of" in refused_host("https://evil.example/a", hosts)
    assert "private or loopback" in refused_host("http://127.0.0.1:8080/", hosts)
    assert "private or loopback" in refused_host("http://[::1]/", hosts)
    assert "loopback" in refused_host("http://localhost/", hosts)
    assert "scheme" in refused_host("file:///etc/passwd", hosts)
    assert refused_host("http://10.0.0.5/", ["10.0.0.5"]) is None  # the config says so


def test_retry_after_reads_seconds_and_dates():
    from datetime import UTC, datetime
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(b"7") == 7
    assert retry_after_seconds("Sun, 01 Jun 2025 12:00:30 GMT", now) == 30
    assert retry_after_seconds("Sun, 01 Jun 2025 11:00:00 GMT", now) == 0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_entity_declarations_are_refused_and_plain_xml_is_not():
    assert xml_entity_refusal(b'<!DOCTYPE r [<!ENTITY a "b">]><r>&a;</r>')
    assert xml_entity_refusal(b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r/>')
    assert xml_entity_refusal(b"<rss><channel><item><link>https://a.vn/</link></item>"
                              b"</channel></rss>") is None
    assert xml_entity_refusal(b"<rss><unclosed>") is None  # malformed: the lenient parsers


def test_a_mislabelled_utf8_page_is_decoded_as_utf8(sites_dir: Path, gold):
    item = next(g for g in gold.values() if g["host"] == "hue.gov.vn")
    with MirrorServer(sites_dir) as mirror:
        resource = mirror.find("GET", item["url"])
        assert resource is not None and resource.file is not None
        body = resource.file.read_bytes()
    assert extract_article(body, item["url"], encoding="iso-8859-1").title == item["title"]


def test_database_credentials_never_reach_the_output_or_the_logs(
        postgres_url: str, sites_dir: Path, tmp_path: Path) -> None:
    password = "s3cret-Pa55"  # the local test server trusts everyone: any password works
    url = make_url(postgres_url).set(password=password).render_as_string(hide_password=False)
    env = {**os.environ, "DTMON_DATABASE_URL": url, "COLUMNS": "160",
           LOG_DIR_ENV: str(tmp_path / "logs")}
    with MirrorServer(sites_dir, snapshot="t1") as mirror:
        done = subprocess.run([sys.executable, "-m", "monitor", "crawl", "--via", mirror.url,
                               "--source", "dongnai"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    logs = "".join(p.read_text("utf-8") for p in (tmp_path / "logs").glob("*.log"))
    assert "stored article" in logs
    assert password not in done.stdout + done.stderr + logs


def test_mirror_serve_rejects_a_bad_fault_spec_clearly(sites_dir: Path) -> None:
    result = CliRunner().invoke(app, ["mirror", "serve", str(sites_dir), "--port", "0",
                                      "--faults", "https://vov.vn/*=meltdown"])
    assert result.exit_code == 1
    assert "unknown fault 'meltdown'" in result.output
