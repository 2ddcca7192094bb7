"""Alert latency in daemon mode: from a new story's commit to its arrival at a webhook.

A dispatcher runs in a background thread polling every ``POLL_SECONDS`` (as the daemon runs
it) over a fresh SQLite file (or ``$DTMON_BENCH_DATABASE_URL``). N articles, each a new
relevant story, are ingested one transaction each at random intervals; a local HTTP receiver
(tests/fixtures/receivers.py) stamps each arrival. Latency = arrival - commit, wall clock.
``DTMON_BENCH_ALERTS_STORIES`` sets N.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from monitor.alerts import Dispatcher, load_rules
from monitor.ingest import ingest_article
from monitor.topics import load_topics
from storage.db import init_db, make_engine, session_factory, session_scope
from storage.repository import ArticleData
from tests.fixtures.receivers import WebhookReceiver

STORIES = int(os.environ.get("DTMON_BENCH_ALERTS_STORIES", "60"))
POLL_SECONDS = 0.5
TARGET_SECONDS = 5.0
DEV_SET = Path(__file__).resolve().parents[1] / "tests" / "data" / "topics_dev.jsonl"


def story(number: int, sentences: list[str], rng: random.Random) -> ArticleData:
    """An article about digital transformation (mostly: its sentences are drawn at random) unlike
    every other one (a new story each time)."""
    body = rng.sample(sentences, 12)
    text = f"Chuyển đổi số ở xã {number}: " + " ".join(body) + f" Mã tin {number}."
    url = f"https://bench.example.vn/tin/{number}"
    return ArticleData(source_name="bench", url=url, url_key=url, province="Huế",
                       title=f"Chuyển đổi số tại xã số {number}", text=text)


def measure(database_url: str, stories: int) -> tuple[list[float], int]:
    """Commit-to-arrival latencies (seconds) of the relevant ones of ``stories`` new stories,
    and how many were relevant (each must arrive once)."""
    rows = [json.loads(line) for line in DEV_SET.read_text("utf-8").splitlines() if line]
    sentences = [s.strip() + "." for r in rows for s in r["text"].split(". ") if len(s) > 40]
    rng = random.Random(6)
    receiver = WebhookReceiver().start()
    engine = make_engine(database_url)
    init_db(engine)
    sessions = session_factory(engine)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "alerts.yaml"
        path.write_text(f'rules: [{{name: all, urls: ["{receiver.url}"]}}]', "utf-8")
        rules = load_rules(path)
    topics = load_topics()
    running = Dispatcher(sessions, rules).start_in_thread(POLL_SECONDS)
    committed: dict[str, float] = {}
    try:
        for number in range(stories):
            with session_scope(sessions) as session:
                result = ingest_article(session, story(number, sentences, rng), topics, rules)
            if result.relevant:  # a story of random sentences may read as a crime report
                committed[f"dtmon:all:story:{result.story_id}"] = time.monotonic()
            time.sleep(rng.uniform(0, 2 * POLL_SECONDS))
        arrivals = receiver.wait_for(len(committed), timeout=60)
    finally:
        running.stop()
        receiver.stop()
        engine.dispose()
    return [a.at - committed[a.key] for a in arrivals if a.key in committed], len(committed)


def run() -> list[dict]:
    """p50/p99 of commit-to-delivery latency with the daemon's dispatcher."""
    url = os.environ.get("DTMON_BENCH_DATABASE_URL")
    with tempfile.TemporaryDirectory() as folder:
        latencies, expected = measure(url or f"sqlite:///{Path(folder) / 'bench.db'}", STORIES)
    latencies.sort()
    backend = "PostgreSQL" if url and url.startswith("postgres") else "SQLite"
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    label = f"alert latency commit→webhook, {backend}, poll {POLL_SECONDS} s"
    return [
        {"metric": f"{label}, delivered", "value": len(latencies),
         "unit": f"of {expected} relevant stories"},
        {"metric": f"{label}, p50", "value": round(statistics.median(latencies), 3),
         "unit": "s", "target": TARGET_SECONDS},
        {"metric": f"{label}, p99", "value": round(p99, 3), "unit": "s",
         "target": TARGET_SECONDS},
        {"metric": f"{label}, max", "value": round(latencies[-1], 3), "unit": "s"},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
