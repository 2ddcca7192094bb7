"""The ``news`` spider end to end: real ``scrapy crawl`` runs against the offline mirror.

Each crawl runs in a subprocess (the Twisted reactor cannot be restarted inside pytest), into
a fresh database of each backend (``database_url``: every crawl test runs on SQLite and on
PostgreSQL; together they take about 25 s per backend). The sitemap parsing tests store
nothing and run once.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import yaml
from scrapy.http import HtmlResponse, Request
from scrapy.utils.test import get_crawler

from crawler.sources import REPO_SOURCES_PATH
from crawler.spiders.news import NewsSpider, newest_first, read_sitemap
from crawler.urls import url_key
from monitor.mirror import MirrorServer
from storage.repository import OwedLink

REPO = Path(__file__).resolve().parents[1]
EXPORTED = "source,province,url,urls,title,text,published,fetched_at"

pytestmark = pytest.mark.slow


def crawl(mirror: MirrorServer, workdir: Path, database: str, *args: str,
          registry: Path | None = None, run: str = "run") -> tuple[list[dict], str]:
    """Run ``scrapy crawl news`` through ``mirror`` into ``database``, with its output files in
    ``workdir`` (optionally with another main registry file); return the items stored and the
    log."""
    items, log = workdir / f"{run}.jsonl", workdir / f"{run}.log"
    command = [
        sys.executable, "-m", "scrapy", "crawl", "news", "-O", str(items),
        "-s", f"DTMON_VIA={mirror.url}", "-s", "AUTOTHROTTLE_ENABLED=False",
        "-s", "DOWNLOAD_DELAY=0", "-s", f"FEED_EXPORT_FIELDS={EXPORTED}",
        "-s", f"DTMON_DATABASE_URL={database}",
        "-s", f"LOG_FILE={log}", *args,
    ]
    env = {**os.environ, **({"DTMON_SOURCES": str(registry)} if registry else {})}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:] + log.read_text("utf-8")[-3000:]
    lines = items.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines], log.read_text("utf-8")


def write_registry(path: Path, sources: list[dict]) -> Path:
    """A main registry file with the real families and provinces and only ``sources``."""
    shipped = yaml.safe_load(REPO_SOURCES_PATH.read_text("utf-8"))
    path.write_text(yaml.safe_dump({"families": shipped["families"],
                                    "provinces": shipped["provinces"], "sources": sources},
                                   allow_unicode=True), "utf-8")
    return path


def _gold_at(gold: dict[str, dict], snapshot: str) -> dict[str, dict]:
    return {g["url"]: g for g in gold.values() if g["snapshot"] == snapshot}


def test_t1_crawl_yields_each_gold_article_once_under_real_urls(
        mirror: MirrorServer, gold: dict[str, dict], tmp_path: Path, database_url: str) -> None:
    items, log = crawl(mirror, tmp_path, database_url)
    expected = _gold_at(gold, "t1")
    counts = Counter(item["url"] for item in items)
    assert set(counts) == set(expected)
    assert max(counts.values()) == 1
    for item in items:
        truth = expected[item["url"]]
        assert item["province"] == truth["province"]
        assert item["text"] and item["fetched_at"]
        assert item["url"] in item["urls"] or set(item["urls"]) & set(truth["alternate_urls"])
        assert all("127.0.0.1" not in url for url in item["urls"])
    # The old-domain link that 301s is recorded as one of the URLs that led to the article.
    led_to = {url for item in items for url in item["urls"]}
    assert any(url.startswith("http://thuathienhue.gov.vn/") for url in led_to)
    assert "'dtmon/vov/interstitials': 1" in log
    assert "anti-bot interstitial dropped" in log


def test_t2_crawl_after_t1_fetches_and_yields_only_the_new_articles(
        mirror_factory: Callable[..., MirrorServer], gold: dict[str, dict],
        tmp_path: Path, database_url: str) -> None:
    mirror = mirror_factory("t1")
    crawl(mirror, tmp_path, database_url, run="t1")
    mirror.set_snapshot("t2")
    mirror.clear_log()
    items, log = crawl(mirror, tmp_path, database_url, run="t2")
    assert sorted(item["url"] for item in items) == sorted(_gold_at(gold, "t2"))
    # Stored articles are not even requested again (the storage pipeline's known_url_keys).
    fetched = {url_key(record.url) for record in mirror.requests}
    assert fetched, "the mirror logs the requests it answers"
    assert not fetched & {url_key(url) for url in _gold_at(gold, "t1")}
    assert "'dtmon/hungyen/links_known': 3" in log


def test_generic_mode_finds_the_articles_from_start_urls_alone(
        mirror: MirrorServer, gold: dict[str, dict], tmp_path: Path, database_url: str) -> None:
    generic = [
        {"name": "hue", "start_urls": ["https://hue.gov.vn/vi-vn/Tin-tuc-su-kien/Chuyen-doi-so"],
         "allowed_domains": ["hue.gov.vn", "thuathienhue.gov.vn"]},
        {"name": "vov", "start_urls": ["https://vov.vn/chuyen-doi-so"]},
        {"name": "quangninh",
         "start_urls": ["https://www.quangninh.gov.vn/Trang/TinTuc.aspx?cm=chuyen-doi-so"]},
    ]
    items, _ = crawl(mirror, tmp_path, database_url,
                     registry=write_registry(tmp_path / "g.yaml", generic))
    hosts = ("https://hue.gov.vn/", "https://vov.vn/", "https://www.quangninh.gov.vn/")
    expected = {url for url in _gold_at(gold, "t1") if url.startswith(hosts)}
    urls = [item["url"] for item in items]
    assert len(urls) == len(set(urls))
    # The lower-case SharePoint link ends under the page's rel=canonical spelling.
    assert set(urls) == expected
    assert {item["province"] for item in items} == {"Huế", None, "Quảng Ninh"}


def test_selected_sources_and_reported_errors(
        mirror: MirrorServer, tmp_path: Path, database_url: str) -> None:
    registry = write_registry(tmp_path / "registry.yaml", [
        {"name": "dongnai", "feeds": ["https://dongnai.gov.vn/vi/news/rss/"]},
        {"name": "vov", "feeds": ["https://vov.vn/chuyen-doi-so"]},  # HTML, not a feed
    ])
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"sources": [
        {"name": "gone", "start_urls": ["https://gone.example.vn/tin-tuc"]},
        {"name": "unused", "start_urls": ["https://unused.example.vn/"]},
    ]}), "utf-8")
    items, log = crawl(mirror, tmp_path, database_url, "-a", "sources=dongnai,gone,vov",
                       "-a", f"sources_file={extra}", registry=registry)
    assert [item["source"] for item in items] == ["dongnai"]
    assert "[gone] HTTP 404 at https://gone.example.vn/tin-tuc" in log
    assert "'dtmon/gone/errors': 1" in log
    assert "[vov] malformed feed https://vov.vn/chuyen-doi-so" in log
    assert "unused.example.vn" not in log


# A portal whose template declares the home page canonical on every page, and which answers
# a removed article with its home page.
PORTAL = "https://portal.example.vn"
PAGE = """<html><head><title>Cổng thông tin</title><link rel="canonical" href="{root}/"></head>
<body><div class="menu"><a href="/">Trang chủ</a></div>{body}</body></html>"""
HOME_BODY = "".join(
    f'<div class="news-item"><h3><a href="/tin-tuc/bai-viet-c10000{n}.html">Tỉnh triển khai '
    f"nhiệm vụ chuyển đổi số số {n} năm 2025</a></h3><p>Tóm tắt tin {n} về chính quyền số và "
    f"dịch vụ công trực tuyến.</p></div>" for n in (1, 2, 3))
LISTING_BODY = HOME_BODY.replace("Tóm tắt tin", "Tin vắn")  # the same links, other text


def _article_body(number: int) -> str:
    paragraphs = "".join(f"<p>Đoạn {k} của bài {number}: Ủy ban nhân dân tỉnh chỉ đạo các sở, "
                         f"ngành đẩy mạnh chuyển đổi số, hoàn thiện dữ liệu dân cư và nâng tỷ lệ "
                         f"hồ sơ trực tuyến toàn trình trong quý {k}.</p>" for k in range(1, 6))
    return (f"<article><h1>Tỉnh triển khai nhiệm vụ chuyển đổi số số {number} năm 2025</h1>"
            f"<p class='date'>Ngày 0{number}/03/2025</p>{paragraphs}</article>")


def write_site(root: Path) -> Path:
    """A mirror folder of PORTAL: home page, a listing, articles 1 and 2, and article 3
    answered with the home page."""
    pages = {"/": HOME_BODY, "/tin-tuc/": LISTING_BODY,
             "/tin-tuc/bai-viet-c100001.html": _article_body(1),
             "/tin-tuc/bai-viet-c100002.html": _article_body(2),
             "/tin-tuc/bai-viet-c100003.html": HOME_BODY}
    resources = []
    for number, (path, body) in enumerate(pages.items()):
        file = root / "portal" / f"{number}.html"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(PAGE.format(root=PORTAL, body=body), "utf-8")
        resources.append({"url": PORTAL + path, "method": "GET", "snapshots": ["t1"],
                          "status": 200, "file": f"portal/{number}.html",
                          "headers": {"Content-Type": "text/html; charset=utf-8"}})
    (root / "manifest.json").write_text(json.dumps({"snapshots": ["t1"],
                                                    "resources": resources}), "utf-8")
    return root


@pytest.mark.parametrize(("listing", "reason"), [
    ("/", "same text as a listing page of this source"),
    ("/tin-tuc/", "home page (same text as portal's home page)"),
])
def test_a_template_canonical_to_the_home_page_loses_no_article(
        listing: str, reason: str, tmp_path: Path, database_url: str) -> None:
    registry = write_registry(tmp_path / "portal.yaml", [
        {"name": "portal", "start_urls": [PORTAL + listing]}])
    with MirrorServer(write_site(tmp_path / "site"), snapshot="t1") as site:
        items, log = crawl(site, tmp_path, database_url, registry=registry)
    assert sorted(item["url"] for item in items) == [
        f"{PORTAL}/tin-tuc/bai-viet-c100001.html", f"{PORTAL}/tin-tuc/bai-viet-c100002.html"]
    assert f"not stored, {reason}: {PORTAL}/tin-tuc/bai-viet-c100003.html" in log


# ---------------------------------------------------------------------------- sitemap parsing

XXE_SITEMAP = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY secret SYSTEM "file:///etc/passwd"><!ENTITY a "aaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>https://site.vn/bai-viet-1.html&secret;&b;</loc></url>
<url><loc>https://site.vn/bai-viet-2.html</loc></url></urlset>"""


def test_sitemaps_are_parsed_without_expanding_entities() -> None:
    kind, entries = read_sitemap(XXE_SITEMAP)
    assert kind == "urlset"
    locs = [entry["loc"] for entry in entries]
    assert locs[-1] == "https://site.vn/bai-viet-2.html"
    assert all("root:" not in loc and "aaaa" not in loc for loc in locs)
    assert read_sitemap(gzip.compress(XXE_SITEMAP)) == (kind, entries)
    assert read_sitemap(b"<html><body>not a sitemap</body></html>") is None
    assert read_sitemap(b"") is None


def test_sitemap_index_shards_newest_first() -> None:
    shards = [{"loc": f"https://vov.vn/sitemaps/{y}/{m}/article.xml"}
              for y, m in ((2024, 12), (2025, 2), (2025, 10), (2025, 6))]
    assert [s["loc"].split("sitemaps/")[1] for s in newest_first(shards)] == [
        "2025/10/article.xml", "2025/6/article.xml", "2025/2/article.xml", "2024/12/article.xml"]
    dated = [{"loc": "https://x.vn/a.xml", "lastmod": "2025-01-01"},
             {"loc": "https://x.vn/b.xml", "lastmod": "2025-03-01"}]
    assert newest_first(dated)[0]["loc"] == "https://x.vn/b.xml"


async def _collect(outputs: AsyncIterator[object]) -> list[object]:
    return [output async for output in outputs]


def test_a_page_without_article_text_is_an_error_with_its_reason() -> None:
    """Nothing empty is stored: the page is counted and reported under its source, with why,
    and its article is owed to the next crawl."""
    crawler = get_crawler(NewsSpider, {"DTMON_EXTRACT_WORKERS": 0})
    spider = NewsSpider.from_crawler(crawler, sources="vov")
    source = spider.selected[0]
    url = "https://vov.vn/chuyen-doi-so/bai-viet-trong.html"
    body = "<html><body><a href='/'>Trang chủ</a></body></html>".encode()
    link = OwedLink("vov", url, url_key(url), "https://vov.vn/chuyen-doi-so")
    response = HtmlResponse(url=url, body=body, encoding="utf-8", request=Request(
        url, meta={"dtmon_source": "vov", "dtmon_article": link}))

    assert asyncio.run(_collect(spider.parse_article(response))) == []
    assert link.key in spider.owed.owed
    assert spider.source_errors["vov"] == [
        f"no article text extracted (no article text found on the page), not stored: {url}"]
    assert crawler.stats.get_value(f"dtmon/{source.name}/errors") == 1
    assert crawler.stats.get_value(f"dtmon/{source.name}/empty_pages") == 1


def _vov_page(url: str, body: str, callback_meta: dict) -> HtmlResponse:
    return HtmlResponse(url=url, body=body.encode(), encoding="utf-8",
                        request=Request(url, meta={"dtmon_source": "vov", **callback_meta}))


VOV_ARTICLES = [f"https://vov.vn/chuyen-doi-so/bai-{n}-post{n}000000.vov" for n in (1, 2)]


def _vov_listing_page_1() -> HtmlResponse:
    """Page 1 of VOV's digital-transformation listing, linking VOV_ARTICLES and page 2."""
    body = ("<html><body><main>"
            + "".join(f'<h3><a href="{url}">Chuyển đổi số bài {n} tại các địa phương</a></h3>'
                      for n, url in enumerate(VOV_ARTICLES))
            + '</main><div class="pagination"><a rel="next" href="?page=1">»</a></div>'
            "</body></html>")
    return _vov_page("https://vov.vn/chuyen-doi-so", body, {"dtmon_listing": 0, "dtmon_page": 1})


def test_a_listing_goes_on_to_its_next_page_when_a_sitemap_requested_its_links_first() -> None:
    """The first crawl reads a listing's older pages even when the sitemap, answered first,
    already requested every article of page 1: those articles are not stored yet, so page 2
    may hold more (the order of answers must not decide what is crawled)."""
    spider = NewsSpider.from_crawler(get_crawler(NewsSpider, {"DTMON_EXTRACT_WORKERS": 0}),
                                     sources="vov")
    sitemap = ('<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
               + "".join(f"<url><loc>{url}</loc></url>" for url in VOV_ARTICLES) + "</urlset>")

    from_sitemap = list(spider.parse_sitemap(_vov_page(
        "https://vov.vn/sitemaps/2025/2/article.xml", sitemap, {})))
    from_listing = list(spider.parse_listing(_vov_listing_page_1()))

    assert sorted(request.url for request in from_sitemap) == sorted(VOV_ARTICLES)
    assert [request.url for request in from_listing] == ["https://vov.vn/chuyen-doi-so?page=1"]


def test_a_listing_stops_at_a_page_whose_articles_are_all_stored() -> None:
    """The incremental crawl: a listing page linking only stored articles ends the walk."""
    spider = NewsSpider.from_crawler(get_crawler(NewsSpider, {"DTMON_EXTRACT_WORKERS": 0}),
                                     sources="vov",
                                     known_url_keys={url_key(url) for url in VOV_ARTICLES})

    assert list(spider.parse_listing(_vov_listing_page_1())) == []
