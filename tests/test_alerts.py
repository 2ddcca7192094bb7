"""Alerts: rules validation, the outbox written with the story, delivery to real receivers
(SMTP and webhook on 127.0.0.1) through retries, concurrent dispatchers, digests and kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from monitor.alerts import (
    AlertsConfigError,
    Dispatcher,
    load_rules,
    raise_operator_alert,
)
from monitor.ingest import ingest_article
from monitor.topics import load_topics
from storage.db import session_factory, session_scope
from storage.models import AlertOutbox, Article
from storage.repository import ArticleData, utcnow
from tests.fixtures.receivers import SMTP_PASSWORD
from tests.fixtures.shared_data import REPO_ROOT

# Gold articles by role (see ../shared/sites/gold): a repost pair, another pair, off-topic.
ORIGINAL, REPOST = "hy-hoi-nghi-thuong-truc-cds", "bhy-hoi-nghi-thuong-truc-cds"
VOV, VOV_REPOST = "vov-thu-tuong-cds-cai-cach-bo-may", "hg-repost-vov-cds"
OTHERS = ["dn-so-hoa-ho-so", "hy-hop-truc-tuyen-cap-xa"]
OFF_TOPIC = ["hue-festival", "vov-gia-vang"]


def write_rules(folder: Path, text: str) -> Path:
    path = folder / "alerts.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def article_data(record: dict) -> ArticleData:
    return ArticleData(source_name=record["host"], url=record["url"], url_key=record["url"],
                       title=record["title"], text="\n".join(record["body"]),
                       province=record["province"], published=record["published"])


@pytest.fixture(scope="module")
def topics():
    return load_topics()


@pytest.fixture
def sessions(engine: Engine):
    return session_factory(engine)


def ingest(sessions, gold, keys, topics, rules) -> None:
    for key in keys:
        with session_scope(sessions) as session:
            ingest_article(session, article_data(gold[key]), topics, rules)


def outbox(sessions) -> list[AlertOutbox]:
    with sessions() as session:
        return list(session.scalars(select(AlertOutbox).order_by(AlertOutbox.id)))


def story_of(sessions, gold, key) -> int:
    with sessions() as session:
        return session.scalar(select(Article.story_id).where(Article.url == gold[key]["url"]))


# --- rules ----------------------------------------------------------------------------------


def test_smallest_rules_file_alerts_every_relevant_story_immediately(tmp_path):
    rules = load_rules(write_rules(tmp_path, 'rules: [{name: all, urls: ["json://127.0.0.1:9999/hook"]}]'))
    rule = rules.rules["all"]
    assert (rule.mode, rule.relevant_only, rule.operator) == ("immediate", True, False)
    assert rule.matches(relevant=True, score=1.0, province=None, source="vov", title="t", text="x")
    assert not rule.matches(relevant=False, score=0.1, province=None, source="vov", title="t",
                            text="x")


def test_shipped_rules_file_is_valid_and_sends_nowhere():
    assert not load_rules()


@pytest.mark.parametrize(("text", "expected"), [
    ("rules: [{name: a, urls: ['json://x/h']}, {name: a, urls: ['json://y/h']}]", "unique: a"),
    ("rules: [{name: d, mode: digest, urls: ['json://x/h']}]", "needs every_hours"),
    ("rules: [{name: b, urls: ['nothing://here']}]", "rule 'b', url 1"),
    ("rules: [{name: c, urls: []}]", "rules[0] ('c').urls"),
    ("rules: [{name: e, urls: ['json://x/h'], provinse: [Huế]}]", "provinse"),
    ("rules: [{name: f, urls: ['mailto://u:${DTMON_TEST_UNSET}@h?to=a@b.c']}]",
     "environment variable DTMON_TEST_UNSET is not set"),
    ("rules: [", "not valid YAML"),
])
def test_invalid_rules_files_say_what_is_wrong(tmp_path, text, expected):
    with pytest.raises(AlertsConfigError, match="alerts.yaml") as error:
        load_rules(write_rules(tmp_path, text))
    assert expected in str(error.value)


def test_filters_on_province_source_score_and_keywords(tmp_path):
    rules = load_rules(write_rules(tmp_path, """
rules:
  - {name: hy, provinces: ["hưng yên"], urls: ["json://x/h"]}
  - {name: vov, sources: [vov], min_score: 2, urls: ["json://x/h"]}
  - {name: ai, keywords: ["trí tuệ nhân tạo"], relevant_only: false, urls: ["json://x/h"]}
"""))
    base = dict(relevant=True, score=3.0, source="vov", title="Tin", text="Nội dung")
    assert rules.rules["hy"].matches(**{**base, "province": "Hưng Yên"})
    assert not rules.rules["hy"].matches(**{**base, "province": "Huế"})
    assert rules.rules["vov"].matches(**{**base, "province": None})
    assert not rules.rules["vov"].matches(**{**base, "province": None, "score": 1.0})
    assert rules.rules["ai"].matches(**{**base, "province": None, "relevant": False,
                                        "text": "Ứng dụng TRÍ TUỆ NHÂN TẠO trong y tế"})
    assert not rules.rules["ai"].matches(**{**base, "province": None, "text": "trí tuệ"})


def test_secrets_never_reach_the_cli_output(database_url, tmp_path, smtp):
    path = write_rules(tmp_path, f'rules: [{{name: mail, urls: ["{smtp.url}"]}}]')
    env = {**os.environ, "DTMON_DATABASE_URL": database_url, "COLUMNS": "200"}
    outputs = {}
    for command in (["list"], ["list", "--json"], ["test", "mail"]):
        done = subprocess.run([sys.executable, "-m", "monitor", "alerts", *command,
                               "--alerts", str(path)], env=env, capture_output=True, text=True,
                              cwd=REPO_ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        assert SMTP_PASSWORD not in done.stdout + done.stderr
        assert "127.0.0.1" in done.stdout
        outputs[" ".join(command)] = done.stdout
    assert len(smtp.wait_for(1)) == 1  # the test message went out, with the secret
    [listed] = [json.loads(line) for line in outputs["list --json"].splitlines()]
    assert listed["name"] == "mail" and listed["mode"] == "immediate"
    assert len(listed["urls"]) == 1 and "****" in listed["urls"][0]


# --- the outbox -----------------------------------------------------------------------------


def test_one_outbox_row_per_relevant_story_none_for_off_topic(sessions, gold, topics, tmp_path):
    rules = load_rules(write_rules(tmp_path, 'rules: [{name: all, urls: ["json://x/h"]}]'))
    ingest(sessions, gold, [ORIGINAL, REPOST, VOV, VOV_REPOST, *OTHERS, *OFF_TOPIC], topics,
           rules)
    rows = outbox(sessions)
    assert sorted(r.story_id for r in rows) == sorted(
        story_of(sessions, gold, key) for key in (ORIGINAL, VOV, *OTHERS))
    assert story_of(sessions, gold, ORIGINAL) == story_of(sessions, gold, REPOST)
    assert story_of(sessions, gold, VOV) == story_of(sessions, gold, VOV_REPOST)
    assert {r.rule for r in rows} == {"all"}
    # The schema itself refuses a second alert of one story to one rule.
    with sessions() as session, pytest.raises(IntegrityError):
        row = rows[0]
        session.add(AlertOutbox(rule=row.rule, kind="story", story_id=row.story_id,
                                dedup_key="other", created_at=utcnow(), due_at=utcnow(),
                                next_attempt_at=utcnow()))
        session.commit()


def test_a_rule_first_matching_a_repost_is_told_once(sessions, gold, topics, tmp_path):
    # The VOV original has no province; the Hà Giang repost is in Tuyên Quang.
    rules = load_rules(write_rules(tmp_path, """
rules:
  - {name: all, urls: ["json://x/h"]}
  - {name: tq, provinces: ["Tuyên Quang"], urls: ["json://x/h"]}
"""))
    ingest(sessions, gold, [VOV, VOV_REPOST], topics, rules)
    story = story_of(sessions, gold, VOV)
    assert sorted((r.rule, r.story_id) for r in outbox(sessions)) == [("all", story),
                                                                      ("tq", story)]


def test_operator_alerts_go_to_operator_rules_once_a_day(sessions, tmp_path):
    rules = load_rules(write_rules(tmp_path, """
rules:
  - {name: all, urls: ["json://x/h"]}
  - {name: ops, operator: true, urls: ["json://x/h"]}
"""))
    for _ in range(2):
        with session_scope(sessions) as session:
            raise_operator_alert(session, "layout_drift", "hue", "0 articles in 3 crawls", rules)
    rows = outbox(sessions)
    assert [(r.rule, r.kind, r.payload["source"]) for r in rows] == [("ops", "operator", "hue")]


# --- delivery -------------------------------------------------------------------------------


def test_every_alert_reaches_mail_and_webhook_once_with_vietnamese_intact(
        sessions, gold, topics, tmp_path, smtp, webhook):
    rules = load_rules(write_rules(tmp_path, f"""
rules:
  - {{name: all, urls: ["{smtp.url}", "{webhook.url}"]}}
"""))
    ingest(sessions, gold, [ORIGINAL, REPOST, VOV, VOV_REPOST, *OFF_TOPIC], topics, rules)
    report = Dispatcher(sessions, rules).run_once()
    assert (report.sent, report.failed) == (2, 0)
    assert Dispatcher(sessions, rules).run_once().claimed == 0
    for receiver in (smtp, webhook):
        arrivals = receiver.wait_for(2)
        assert len(arrivals) == 2
        titles = sorted(a.title for a in arrivals)
        assert titles == sorted(f"[dtmon] {gold[k]['title']}" for k in (ORIGINAL, VOV))
        hy = next(a for a in arrivals if gold[ORIGINAL]["title"] in a.title)
        assert gold[ORIGINAL]["url"] in hy.body
        assert "Hưng Yên" in hy.body and gold[ORIGINAL]["body"][0][:60] in hy.body
        assert "chuyển đổi số" in hy.body  # matched topic terms, and the excerpt
    assert all(r.sent_at is not None for r in outbox(sessions))


def test_a_webhook_down_for_a_while_gets_each_alert_exactly_once(
        sessions, gold, topics, tmp_path, webhook):
    rules = load_rules(write_rules(tmp_path, f'rules: [{{name: all, urls: ["{webhook.url}"]}}]'))
    ingest(sessions, gold, [ORIGINAL, VOV, *OTHERS], topics, rules)
    webhook.fail_remaining = 7  # the first attempts of every alert, and some retries
    dispatcher = Dispatcher(sessions, rules, retry_seconds=0.05)
    left = dispatcher.drain(timeout_seconds=30, poll_seconds=0.02)
    assert left.left == 0 and webhook.failed == 7
    arrivals = webhook.wait_for(4)
    assert len(arrivals) == 4
    assert len({a.key for a in arrivals}) == 4
    assert max(r.attempts for r in outbox(sessions)) > 1


def test_two_dispatchers_never_send_one_alert_twice(sessions, gold, topics, tmp_path, webhook):
    rules = load_rules(write_rules(tmp_path, f'rules: [{{name: all, urls: ["{webhook.url}"]}}]'))
    ingest(sessions, gold, [ORIGINAL, VOV, *OTHERS], topics, rules)
    dispatchers = [Dispatcher(sessions, rules, batch=1) for _ in range(4)]
    threads = [threading.Thread(target=d.drain, args=(20, 0.01)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    arrivals = webhook.wait_for(4)
    assert sorted(a.key for a in arrivals) == sorted(
        f"dtmon:all:story:{r.story_id}" for r in outbox(sessions))


def test_a_digest_rule_sends_one_message_with_every_story_of_its_window(
        sessions, gold, topics, tmp_path, webhook):
    rules = load_rules(write_rules(tmp_path, f"""
rules:
  - {{name: daily, mode: digest, every_hours: 24, urls: ["{webhook.url}"]}}
"""))
    ingest(sessions, gold, [ORIGINAL, REPOST, VOV, *OTHERS, *OFF_TOPIC], topics, rules)
    now = Dispatcher(sessions, rules)
    assert now.run_once().claimed == 0  # the window is still open
    tomorrow = Dispatcher(sessions, rules, clock=lambda: utcnow() + timedelta(hours=24))
    assert tomorrow.run_once().sent == 1
    assert tomorrow.run_once().claimed == 0
    (arrival,) = webhook.wait_for(1)
    assert "daily: 4 alert(s)" in arrival.title
    for key in (ORIGINAL, VOV, *OTHERS):
        assert gold[key]["title"] in arrival.body and gold[key]["url"] in arrival.body
    assert gold[OFF_TOPIC[0]]["title"] not in arrival.body


def test_a_dispatcher_killed_mid_send_resumes_and_each_alert_is_kept_once(
        database_url, engine, sessions, gold, topics, tmp_path, webhook):
    path = write_rules(tmp_path, f'rules: [{{name: all, urls: ["{webhook.url}"]}}]')
    ingest(sessions, gold, [ORIGINAL, VOV, *OTHERS], topics, load_rules(path))
    webhook.hold_seconds = 30  # the first message arrives, its answer never comes
    command = [sys.executable, "-m", "monitor", "alerts", "dispatch", "--alerts", str(path),
               "--lease-seconds", "1", "--retry-seconds", "0.1", "--timeout", "30"]
    env = {**os.environ, "DTMON_DATABASE_URL": database_url}
    first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert webhook.held.wait(30), "the dispatcher never sent"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert len(webhook.arrivals) == 1
    second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    rows = outbox(sessions)
    assert all(r.sent_at is not None for r in rows)
    # At-least-once + idempotency key: the message in flight when the sender died may come
    # again, with the same key; what an idempotent receiver keeps is each alert exactly once.
    assert sorted(webhook.accepted_keys) == sorted(f"dtmon:all:story:{r.story_id}" for r in rows)
    assert len(webhook.arrivals) == len(rows) + 1  # the one in flight, sent again
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AlertOutbox)) == 4
