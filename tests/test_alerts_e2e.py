"""Alerts end to end: `dtmon crawl --via <mirror> --alerts FILE` at t1 then t2, delivering to a
real SMTP server and a real webhook on 127.0.0.1, once on SQLite and once on PostgreSQL
(``database_url``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.mirror import MirrorServer
from tests.fixtures.receivers import SMTP_PASSWORD, SmtpReceiver, WebhookReceiver

pytestmark = pytest.mark.slow

MIRRORED_SOURCES = ["vov", "hungyen", "baohungyen", "quangninh", "hagiang", "hue", "dongnai"]
PAIRS = [("hy-hoi-nghi-thuong-truc-cds", "bhy-hoi-nghi-thuong-truc-cds"),
         ("vov-thu-tuong-cds-cai-cach-bo-may", "hg-repost-vov-cds")]


class Dtmon:
    """Runs `dtmon` in a subprocess on one database."""

    def __init__(self, database_url: str, workdir: Path) -> None:
        self.database_url = database_url
        self.workdir = workdir

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DTMON_DATABASE_URL": self.database_url, "COLUMNS": "160"}
        return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=self.workdir,
                              env=env, capture_output=True, text=True, timeout=300)

    def crawl(self, mirror: MirrorServer, rules: Path) -> str:
        args = ["crawl", "--via", mirror.url, "--alerts", str(rules)]
        for name in MIRRORED_SOURCES:
            args += ["--source", name]
        done = self.run(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def relevant_stories(self) -> dict[int, list[dict]]:
        listed = self.run("articles", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        stories: dict[int, list[dict]] = {}
        for article in map(json.loads, listed.stdout.splitlines()):
            if article.get("relevant"):
                stories.setdefault(article["story_id"], []).append(article)
        return stories


@pytest.fixture
def dtmon(database_url: str, tmp_path: Path) -> Dtmon:
    return Dtmon(database_url, tmp_path)


def test_crawls_at_t1_then_t2_alert_each_new_relevant_story_once(
        dtmon, mirror, smtp: SmtpReceiver, webhook: WebhookReceiver, gold, tmp_path):
    rules = tmp_path / "alerts.yaml"
    rules.write_text(f'rules: [{{name: all, urls: ["{smtp.url}", "{webhook.url}"]}}]', "utf-8")

    output = dtmon.crawl(mirror, rules)
    t1_stories = dtmon.relevant_stories()
    assert SMTP_PASSWORD not in output
    assert f"Alerts: {len(t1_stories)} delivered" in output
    for receiver in (smtp, webhook):
        assert len(receiver.wait_for(len(t1_stories))) == len(t1_stories)
        assert sorted(a.key for a in receiver.arrivals) == sorted(
            f"dtmon:all:story:{story}" for story in t1_stories)
    titles = [a.title for a in webhook.arrivals]
    for original, repost in PAIRS:  # a repost and its original: one alert between them
        both = {f"[dtmon] {gold[original]['title']}", f"[dtmon] {gold[repost]['title']}"}
        assert sum(title in both for title in titles) == 1
    off_topic = {f"[dtmon] {g['title']}" for g in gold.values() if g["topic"].endswith("off")}
    assert not off_topic & set(titles)

    mirror.set_snapshot("t2")
    output = dtmon.crawl(mirror, rules)
    new_stories = set(dtmon.relevant_stories()) - set(t1_stories)
    assert new_stories, "t2 brings new relevant stories"
    total = len(t1_stories) + len(new_stories)
    for receiver in (smtp, webhook):
        arrivals = receiver.wait_for(total)
        assert len(arrivals) == total
        assert sorted(a.key for a in arrivals[len(t1_stories):]) == sorted(
            f"dtmon:all:story:{story}" for story in new_stories)
    t2_gold = {f"[dtmon] {g['title']}" for g in gold.values() if g["snapshot"] == "t2"}
    assert {a.title for a in webhook.arrivals[len(t1_stories):]} <= t2_gold
