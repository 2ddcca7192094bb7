"""Every configured source against its evidence (tests/data/source_evidence.yaml): the real
article URLs found for a site are articles by its configuration, its listing and static URLs are
not, its listing templates give the page-2 URL the evidence shows, and its POST forms carry the
fields the evidence names."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crawler.discovery import looks_like_article_url
from crawler.sources import REPO_SOURCES_PATH, Listing, Registry, Source, load_registry

EVIDENCE_PATH = Path(__file__).parent / "data" / "source_evidence.yaml"
EVIDENCE: dict[str, dict] = yaml.safe_load(EVIDENCE_PATH.read_text("utf-8"))
MEASURED = Path(__file__).resolve().parents[2] / "shared" / "measured-urls.txt"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(REPO_SOURCES_PATH)


def is_article(source: Source, url: str) -> bool:
    """How a crawl of ``source`` judges ``url``: its article pattern, else the URL shape."""
    verdict = source.is_article_url(url)
    return looks_like_article_url(url) if verdict is None else verdict


def listing(source: Source, url: str) -> Listing:
    return next(lst for lst in source.listings if lst.url == url)


@pytest.mark.parametrize("name", sorted(EVIDENCE))
def test_real_article_urls_are_articles_and_listing_urls_are_not(registry, name):
    source, evidence = registry.get(name), EVIDENCE[name]
    assert [u for u in evidence.get("articles", []) if not is_article(source, u)] == []
    assert [u for u in evidence.get("not_articles", []) if is_article(source, u)] == []


@pytest.mark.parametrize(("name", "page2"), [
    (name, case) for name, evidence in sorted(EVIDENCE.items())
    for case in evidence.get("page2", [])])
def test_listing_template_gives_the_second_page_the_evidence_shows(registry, name, page2):
    paging = listing(registry.get(name), page2["listing"]).next_page
    url, _ = paging.render(paging.first, {})
    assert url == page2["url"]


@pytest.mark.parametrize(("name", "post"), [
    (name, case) for name, evidence in sorted(EVIDENCE.items())
    for case in evidence.get("post_fields", [])])
def test_post_pagination_carries_the_fields_the_evidence_names(registry, name, post):
    paging = listing(registry.get(name), post["listing"]).next_page
    assert paging.method == "POST"
    assert set(post["fields"]) <= set(paging.form)


def test_every_configured_source_has_evidence_urls_and_every_generic_one_a_reason(registry):
    counts = Counter(source.configured for source in registry.sources)
    assert counts["evidence"] + counts["family"] >= 30, counts
    for source in registry.sources:
        if source.configured == "generic":
            assert source.generic_reason, source.name
        else:
            assert source.name in EVIDENCE, source.name


def test_no_evidence_url_is_a_measured_page():
    if not MEASURED.exists():
        pytest.skip(f"{MEASURED} not found: put dtmon's shared/ folder beside the repo")
    measured = {line.strip() for line in MEASURED.read_text("utf-8").splitlines()}
    text = EVIDENCE_PATH.read_text("utf-8")
    assert [url for url in measured if url.startswith("http") and url in text] == []


def test_sources_list_json_says_how_each_source_is_configured():
    from monitor.cli import app

    result = CliRunner().invoke(app, ["sources", "list", "--json"])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 37
    by_name = {row["name"]: row for row in rows}
    assert by_name["dienbien"]["configured"] == "evidence"
    assert by_name["dienbien"]["family"] == "sharepoint-tandan"
    assert by_name["camau"]["configured"] == "family"
    assert by_name["langson"]["configured"] == "generic" and by_name["langson"]["generic_reason"]


def test_sources_check_shows_family_evidence_and_what_the_last_crawl_found(
        crawled_database: str, registry: Registry):
    from monitor.cli import app

    result = CliRunner().invoke(app, ["sources", "check", "--json"],
                                env={"DTMON_DATABASE_URL": crawled_database})
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert len(rows) == len(registry.sources)
    for name in ("vov", "hue", "hagiang", "dongnai"):  # crawled from the mirror
        assert rows[name]["last_run_at"] and rows[name]["article_links"] > 0, rows[name]
        assert rows[name]["articles_found"] > 0, rows[name]
    assert (rows["hue"]["configured"], rows["hue"]["family"]) == ("evidence", "dotnetnuke")
    assert rows["dienbien"]["evidence"] == len(registry.get("dienbien").evidence) > 0
    assert rows["dienbien"]["last_run_at"] is None and rows["dienbien"]["article_links"] is None
