"""The web page in a real headless Chromium, against `dtmon serve` on 127.0.0.1 over the crawled
mirror (on SQLite and on PostgreSQL): relevant stories listed, province filter, search, scraped
text shown as text."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from monitor.ingest import ingest_article
from monitor.topics import load_topics
from storage.db import make_engine, session_factory, session_scope
from storage.repository import ArticleData
from tests.fixtures.shared_data import REPO_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
HOSTILE_TITLE = "<script>window.pwned = true</script> Chuyển đổi số <b>Hưng Yên</b>"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Chromium not found (make test installs it: apt-get install -y chromium)",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _add_hostile_story(url: str) -> None:
    """A relevant article whose scraped title and text carry markup."""
    text = (
        "Hưng Yên đẩy mạnh chuyển đổi số, xây dựng chính quyền số, kinh tế số và xã hội số. "
        "<img src=x onerror=\"window.pwned = true\"> Chuyển đổi số là nhiệm vụ trọng tâm. " * 5
    )
    engine = make_engine(url)
    with session_scope(session_factory(engine)) as session:
        result = ingest_article(session, ArticleData(
            source_name="hungyen", url="https://hungyen.gov.vn/script-test.html",
            url_key="https://hungyen.gov.vn/script-test.html", title=HOSTILE_TITLE, text=text,
            province="Hưng Yên", published="2030-01-01T08:00:00+07:00",
        ), load_topics())
    engine.dispose()
    assert result.relevant


@pytest.fixture(scope="module")
def server(crawled_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dtmon serve` over a copy of the crawled mirror (plus one hostile story), per backend."""
    folder = tmp_path_factory.mktemp("web")
    _add_hostile_story(crawled_database)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,
        env={**os.environ, "DTMON_DATABASE_URL": crawled_database, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_up(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dtmon serve exited: {process.stderr.read().decode()}")
        try:
            urllib.request.urlopen(base + "/openapi.json", timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("dtmon serve did not answer within 30 s")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def _api(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.load(response)


def _listed_ids(page: Page) -> list[int]:
    return [int(i) for i in page.locator("article.story").evaluate_all(
        "nodes => nodes.map(n => n.dataset.storyId)")]


def test_page_lists_the_relevant_stories_with_copies_terms_and_sources(
    server: str, page: Page
) -> None:
    page.goto(server + "/")
    expected = _api(server, "/stories?relevant=true&limit=100")["items"]
    assert _listed_ids(page) == [story["id"] for story in expected]
    assert len(expected) > 10  # the mirror's relevant stories and the hostile one
    titles = page.locator("article.story .title").all_text_contents()
    assert titles == [story["title"] for story in expected]  # Vietnamese intact
    syndicated = next(s for s in expected if len(s["copies"]) > 1)
    story = page.locator(f'article.story[data-story-id="{syndicated["id"]}"]')
    assert story.locator(".copies li").count() == len(syndicated["copies"])
    assert story.locator(".term").count() > 0
    health = page.locator("#sources tbody tr")
    assert health.count() >= 7
    assert "ok" in health.first.inner_text()


def test_province_filter(server: str, page: Page) -> None:
    page.goto(server + "/")
    page.select_option("#province", "Huế")
    page.click("button[type=submit]")
    page.wait_for_url("**province=*")
    expected = _api(server, "/stories?relevant=true&limit=100&province=Hu%E1%BA%BF")["items"]
    assert _listed_ids(page) == [story["id"] for story in expected] and expected
    assert page.locator("#province").input_value() == "Huế"


def test_search_box(server: str, page: Page) -> None:
    page.goto(server + "/")
    page.fill("#q", "bản đồ số")
    page.press("#q", "Enter")
    page.wait_for_url("**q=*")
    titles = page.locator("article.story .title").all_text_contents()
    assert titles and all(title for title in titles)
    assert any("Hue-S" in title for title in titles)
    assert len(titles) < len(_api(server, "/stories?relevant=true&limit=100")["items"])


def test_a_title_with_script_markup_is_shown_as_text(server: str, page: Page) -> None:
    page.goto(server + "/?q=chuyển đổi số&province=Hưng Yên")
    title = page.locator("article.story .title", has_text="<script>")
    assert title.inner_text() == HOSTILE_TITLE
    assert page.locator("article.story script, article.story b, article.story img").count() == 0
    assert page.evaluate("window.pwned") is None
