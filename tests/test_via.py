"""Real Scrapy crawls through crawler/via.py: every URL a spider sees is the real one.

Each crawl runs in a subprocess (the Twisted reactor cannot restart inside pytest), from the
repo root so crawler/settings.py (which registers the via handler) applies; dtmon's storage
pipeline records it in a SQLite ``database_url`` (the contract is HTTP's, not the database's).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.fixtures.database import SQLITE_ONLY

REPO_ROOT = Path(__file__).resolve().parents[1]
PROBE = REPO_ROOT / "tests" / "spiders_for_tests" / "via_probe.py"
VOV_LISTING = "https://vov.vn/chuyen-doi-so"
HUE_PATH = ("/vi-vn/Tin-tuc-su-kien/tid/Festival-Hue-2024-Se-Dien-Ra-Bon-Mua-Trong-Nam"
            "/newsid/546C8472-E619-272D-24F2-DF400333C0BF/cid/1E5D21CD-3B48-3932-31E6-A6180589A745")
HAGIANG_MORE = ("https://hagiang.gov.vn/DesktopModule/UIArticleInMenu/"
                "ArticleInMenuPagination.aspx/LoadArticle")

pytestmark = SQLITE_ONLY


class Crawl(Protocol):
    def __call__(self, requests: list[dict[str, Any]], via: str) -> tuple[list[dict], str]: ...


@pytest.fixture
def crawl(database_url: str, tmp_path: Path) -> Crawl:
    """``crawl(requests, via)`` runs the probe spider with ``DTMON_VIA=via``; its items and log."""

    def run(requests: list[dict[str, Any]], via: str) -> tuple[list[dict], str]:
        out = tmp_path / "items.jsonl"
        command = [
            sys.executable, "-m", "scrapy", "runspider", str(PROBE),
            "-a", f"requests={json.dumps(requests)}", "-o", f"{out}:jsonlines",
            "-s", f"DTMON_VIA={via}", "-s", "DOWNLOAD_DELAY=0",
            "-s", "AUTOTHROTTLE_ENABLED=False", "-s", "TELNETCONSOLE_ENABLED=False",
            "-s", f"DTMON_DATABASE_URL={database_url}",  # not the user's
        ]
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        items = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        return items, done.stderr

    return run


class EchoHandler(BaseHTTPRequestHandler):
    """Another server honouring the contract: answers with the real URL it was asked for."""

    def do_GET(self) -> None:  # noqa: N802
        self._echo(b"")

    def do_POST(self) -> None:  # noqa: N802
        self._echo(self.rfile.read(int(self.headers["Content-Length"])))

    def real_url(self) -> str:
        return f"{self.headers['X-Original-Scheme']}://{self.headers['X-Original-Host']}{self.path}"

    def _echo(self, body: bytes) -> None:
        payload = f"{self.command} {self.real_url()} {body.decode()}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class PlainHandler(EchoHandler):
    """A server that is the site itself (no mirror headers): what the live web looks like."""

    def real_url(self) -> str:
        assert "X-Original-Host" not in self.headers
        return f"direct://{self.headers['Host']}{self.path}"


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run ``handler`` on a free local port for the duration of a fixture; yield its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def echo_server() -> Iterator[str]:
    yield from serve(EchoHandler)


@pytest.fixture
def plain_server() -> Iterator[str]:
    yield from serve(PlainHandler)


def test_crawl_through_mirror_sees_only_real_urls(crawl, mirror):
    old_hue = f"http://thuathienhue.gov.vn{HUE_PATH}"
    items, log = crawl([{"url": VOV_LISTING}, {"url": old_hue}], via=mirror.url)

    by_start = {(item["redirect_urls"] or [item["url"]])[0]: item for item in items}
    assert set(by_start) == {VOV_LISTING, old_hue}, log
    vov, hue = by_start[VOV_LISTING], by_start[old_hue]
    assert (vov["url"], vov["request_url"], vov["status"]) == (VOV_LISTING, VOV_LISTING, 200)
    assert hue["url"] == hue["request_url"] == f"https://hue.gov.vn{HUE_PATH}"
    assert hue["redirect_urls"] == [old_hue]
    assert mirror.url not in json.dumps(items)

    fetched = {(r.url, r.status) for r in mirror.requests}
    assert ("https://vov.vn/robots.txt", 200) in fetched
    assert ("http://thuathienhue.gov.vn/robots.txt", 301) in fetched
    assert (old_hue, 301) in fetched
    assert (f"https://hue.gov.vn{HUE_PATH}", 200) in fetched


def test_post_form_reaches_the_mirror(crawl, mirror):
    form = {"article_category_id": "1203", "site_id": "4", "page": "1"}
    items, log = crawl([{"url": HAGIANG_MORE, "formdata": form}], via=mirror.url)

    assert [(i["method"], i["url"], i["status"]) for i in items] == [
        ("POST", HAGIANG_MORE, 200)], log
    assert ("POST", HAGIANG_MORE, 200) in {(r.method, r.url, r.status) for r in mirror.requests}


def test_any_server_honouring_the_contract_works(crawl, echo_server):
    requests = [{"url": "https://example.org/news?page=2"},
                {"url": "http://example.net/form", "formdata": {"q": "chuyển đổi số"}}]
    items, log = crawl(requests, via=echo_server)

    echoed = sorted(item["text_start"] for item in items)
    assert echoed == ["GET https://example.org/news?page=2 ",
                      "POST http://example.net/form q=chuy%E1%BB%83n+%C4%91%E1%BB%95i+s%E1%BB%91"
                      ], log
    assert sorted(item["url"] for item in items) == [
        "http://example.net/form", "https://example.org/news?page=2"]


def test_without_via_requests_go_straight_to_the_site(crawl, plain_server):
    items, log = crawl([{"url": f"{plain_server}/page"}], via="")

    assert [item["text_start"] for item in items] == [
        f"GET direct://{plain_server.removeprefix('http://')}/page "], log


def test_invalid_via_is_reported_and_nothing_is_fetched(crawl):
    items, log = crawl([{"url": VOV_LISTING}], via="ftp://127.0.0.1:8765")

    assert items == []
    assert "DTMON_VIA='ftp://127.0.0.1:8765' is not a mirror address" in log
