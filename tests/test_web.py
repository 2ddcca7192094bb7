"""The web page in a real headless Chromium, against `dtmon serve` on 127.0.0.1 over the crawled
mirror (on SQLite and on PostgreSQL): relevant stories listed with their lead and strongest
terms, the province × month chart, the sources page, province filter, search, scraped text
shown as text, and Swagger UI at /docs with every request to another host refused.

Screenshots of the pages are written to $DTMON_SCREENSHOTS (default: the test's temporary
folder)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("DTMON_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _offline(page: Page) -> list[str]:
    """Refuse every request to another host than 127.0.0.1 (the network is off); returns the
    list the refused URLs are added to."""
    refused: list[str] = []

    def only_local(route: Any) -> None:
        if urllib.parse.urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    return refused


def _listed_ids(page: Page) -> list[int]:
    return [int(i) for i in page.locator("article.story").evaluate_all(
        "nodes => nodes.map(n => n.dataset.storyId)")]


def test_page_lists_the_relevant_stories_with_leads_terms_and_copies(
    server: str, page: Page, screenshots: Path
) -> None:
    refused = _offline(page)
    page.goto(server + "/")
    expected = _api(server, "/stories?relevant=true&limit=100")["items"]
    assert _listed_ids(page) == [story["id"] for story in expected]
    assert len(expected) > 10  # the mirror's relevant stories and the hostile one
    titles = page.locator("article.story .title").all_text_contents()
    assert titles == [story["title"] for story in expected]  # Vietnamese intact
    leads = page.locator("article.story .lead").all_text_contents()
    assert len(leads) == len(expected)
    for story, shown in zip(expected, leads, strict=True):
        text = _api(server, f"/stories/{story['id']}")["representative"]["text"]
        assert 40 <= len(shown) <= 300 and text.startswith(shown.removesuffix(" …")[:40])
    syndicated = next(s for s in expected if len(s["copies"]) > 1)
    story = page.locator(f'article.story[data-story-id="{syndicated["id"]}"]')
    assert story.locator(".copies li").count() == len(syndicated["copies"])
    for card in page.locator("article.story").all():
        terms = card.locator(".term").all_text_contents()
        assert 1 <= len(terms) <= 5
    assert page.locator("html").get_attribute("lang") == "vi"
    assert "Tin mới nhất" in page.content() and "giờ Việt Nam" in page.content()
    page.screenshot(path=screenshots / "home.png", full_page=True)
    assert refused == []  # nothing from a CDN


def test_chart_has_one_mark_per_province_with_stories(server: str, page: Page,
                                                      screenshots: Path) -> None:
    page.goto(server + "/")
    stories = _api(server, "/stories?relevant=true&limit=100")["items"]
    per_province: dict[str, int] = {}
    for story in stories:
        province = story["representative"]["province"] or "Toàn quốc"
        per_province[province] = per_province.get(province, 0) + 1
    marks = page.locator("#chart rect.province-mark").evaluate_all(
        "nodes => nodes.map(n => [n.dataset.province, Number(n.dataset.count)])")
    assert dict(marks) == per_province and len(marks) == len(per_province)
    assert len({"Hưng Yên", "Huế", "Quảng Ninh", "Tuyên Quang"} & set(per_province)) == 4
    cells = page.locator("#chart rect.cell").evaluate_all(
        "nodes => nodes.map(n => Number(n.dataset.count))")
    assert sum(cells) <= len(stories) and max(cells) >= 1
    page.locator("#chart").screenshot(path=screenshots / "chart.png")


def test_sources_page_shows_health_last_success_and_errors(server: str, page: Page,
                                                           screenshots: Path) -> None:
    refused = _offline(page)
    page.goto(server + "/nguon")
    sources = {s["name"]: s for s in _api(server, "/sources")}
    rows = page.locator("#sources tbody tr")
    assert rows.count() == len(sources) >= 7
    hue = page.locator('#sources tr[data-source="hue"]')
    assert "tốt" in hue.inner_text()
    assert sources["hue"]["health"]["last_success_at"][:10] in hue.inner_text()
    assert page.locator("#sources th", has_text="Bài còn nợ").count() == 1
    page.screenshot(path=screenshots / "sources.png", full_page=True)
    assert refused == []


def test_swagger_ui_renders_with_the_network_off(server: str, page: Page,
                                                 screenshots: Path) -> None:
    refused = _offline(page)
    page.goto(server + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
    assert "dtmon" in page.locator(".swagger-ui .info .title").inner_text()
    page.wait_for_selector(".opblock-summary-path", timeout=15_000)
    paths = page.locator(".opblock-summary-path").all_text_contents()
    assert "/stories" in [path.strip() for path in paths]
    page.screenshot(path=screenshots / "docs.png")
    assert refused == []


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
