"""Source health: the rules on constructed run histories, and layout drift on a changed mirror.

The drift test copies the offline mirror into tmp_path and changes one listing page the way a
site redesign does (the article links become script-driven ``data-link`` attributes, and the
page gets a new ETag): one crawl later the source is flagged and an operator alert is raised.
It runs once per backend (``database_url``); the rule tests use no database.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from monitor.crawling import CrawlOptions, run_crawl
from monitor.health import (
    FAILURES_TO_ALERT,
    OperatorAlerts,
    RunOutcome,
    assess,
    check_run,
)
from monitor.mirror import MirrorServer
from storage.db import init_db, make_engine, session_factory
from tests.fixtures.shared_data import REPO_ROOT

HUE_LISTING = "https://hue.gov.vn/vi-vn/Tin-tuc-su-kien/Chuyen-doi-so"
FAST = {"DOWNLOAD_DELAY": "0", "AUTOTHROTTLE_ENABLED": "0"}
START = datetime(2025, 6, 1, 8, 0)


def run(number: int, status: str = "ok", errors: int = 0, **stats: int) -> RunOutcome:
    """Run ``number`` (higher is newer) with the spider counters ``stats``."""
    return RunOutcome(number, START + timedelta(minutes=30 * number), status, errors, stats)


def newest_first(*runs: RunOutcome) -> list[RunOutcome]:
    return sorted(runs, key=lambda r: r.run_id, reverse=True)


HEALTHY = {"discovery_pages": 1, "links_found": 10, "articles_found": 2}


def test_a_never_crawled_source_has_no_problem():
    health = assess("hue", [])
    assert health.state == "never crawled" and not health.problems


def test_a_listing_without_links_after_runs_with_links_is_drift():
    health = assess("hue", newest_first(run(1, **HEALTHY),
                                        run(2, discovery_pages=1, discovery_empty=1)))
    assert "layout_drift" in health.problems
    assert health.state == "layout_drift"


def test_no_links_from_the_first_run_on_is_not_called_drift():
    health = assess("hue", newest_first(run(1, discovery_pages=1, discovery_empty=1)))
    assert "layout_drift" not in health.problems


def test_unchanged_listings_304_keep_the_last_verdict():
    history = newest_first(run(1, **HEALTHY), run(2, discovery_pages=1, discovery_empty=1),
                           run(3, not_modified=1))
    assert "layout_drift" in assess("hue", history).problems
    healed = newest_first(*history, run(4, **HEALTHY), run(5, not_modified=1))
    assert "layout_drift" not in assess("hue", healed).problems


def test_empty_bodies_and_missing_dates_after_good_runs_are_degraded_extraction():
    good = run(1, articles_found=4)
    bad = run(2, articles_found=1, empty_pages=3, no_date=1)
    health = assess("hue", newest_first(good, bad))
    assert health.empty_share == 0.75 and health.no_date_share == 1.0
    assert "extraction_degraded" in health.problems
    assert "75% of article pages empty" in health.problems["extraction_degraded"]


def test_consecutive_failures_count_until_the_last_success():
    history = [run(1), run(2, status="failed"), run(3, errors=2), run(4, status="interrupted"),
               run(5, status="failed")]
    health = assess("hue", newest_first(*history))
    assert health.consecutive_failures == FAILURES_TO_ALERT == 3
    assert health.last_success_at == history[0].started_at
    assert "failing" in health.problems


@pytest.fixture
def drifted_mirror(sites_dir: Path, tmp_path: Path) -> Path:
    """A copy of the mirror where Huế's listing moved its article links out of ``href``."""
    copy = tmp_path / "sites"
    shutil.copytree(sites_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text("utf-8"))
    for resource in manifest["resources"]:
        if resource["url"] == HUE_LISTING:
            body = copy / resource["file"]
            html = body.read_text("utf-8")
            assert 'class="news-title" href=' in html
            redesigned = html.replace('class="news-title" href=', 'class="news-title" data-link=')
            body.write_text(redesigned, "utf-8")
            resource["headers"]["ETag"] = '"redesigned"'
            resource["headers"]["Last-Modified"] = "Mon, 09 Jun 2025 02:00:00 GMT"
    (copy / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    return copy


def test_a_changed_listing_template_is_flagged_within_one_run_and_alerted(
        database_url: str, sites_dir: Path, drifted_mirror: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    sessions = session_factory(engine)
    alerts = OperatorAlerts(sessions)
    outcomes = []
    for folder in (sites_dir, drifted_mirror):
        with MirrorServer(folder, snapshot="t2") as mirror:
            options = CrawlOptions(sources=["hue"], via=mirror.url, extra_settings=FAST)
            outcomes.append(run_crawl(options, sessions, database_url))
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert check_run(sessions, outcomes[0].run_id, alerts)[0].problems == {}
    with caplog.at_level(logging.WARNING, logger="dtmon.health"):
        health = check_run(sessions, outcomes[1].run_id, alerts)[0]
    assert "layout_drift" in health.problems
    assert [(kind, source) for kind, source, _ in alerts.raised] == [("layout_drift", "hue")]
    assert "OPERATOR ALERT layout_drift [hue]" in caplog.text
    engine.dispose()

    status = subprocess.run(
        [sys.executable, "-m", "monitor", "status", "--json"], cwd=tmp_path, text=True,
        capture_output=True, timeout=120,
        env={**os.environ, "DTMON_DATABASE_URL": database_url, "PYTHONPATH": str(REPO_ROOT)})
    assert status.returncode == 0, status.stderr
    by_source = {r["source"]: r for r in map(json.loads, status.stdout.splitlines())}
    assert by_source["hue"]["state"] == "layout_drift"
    assert by_source["hue"]["articles_found"] == 0
    assert by_source["vov"]["state"] == "never crawled"
