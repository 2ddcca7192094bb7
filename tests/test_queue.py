"""Work queue on SQLite and PostgreSQL: every relevant story once per consumer, leases that expire,
parallel workers that never share a story."""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from monitor import queue
from monitor.cli import app
from storage.db import session_factory, session_scope
from storage.models import Article, Source, Story

START = datetime(2026, 3, 1, 1, 0)


def add_stories(engine: Engine, count: int, *, relevant_every: int = 1, copies: int = 1) -> None:
    """``count`` stories of ``copies`` articles each; every ``relevant_every``-th is relevant."""
    with session_scope(session_factory(engine)) as session:
        sources = [Source(name=f"site{n}", province="Hưng Yên", created_at=START)
                   for n in range(copies)]
        session.add_all(sources)
        session.flush()
        stories = [{"id": i, "created_at": START} for i in range(1, count + 1)]
        session.execute(insert(Story), stories)
        rows = []
        for story in range(1, count + 1):
            for copy, source in enumerate(sources):
                article_id = (story - 1) * copies + copy + 1
                relevant = story % relevant_every == 0
                rows.append(_article_row(article_id, story, copy, source.id, relevant))
        session.execute(insert(Article), rows)
        session.execute(update(Story).values(representative_id=(Story.id - 1) * copies + 1))


def _article_row(article_id: int, story: int, copy: int, source_id: int, relevant: bool) -> dict:
    url = f"https://site{copy}.example.vn/tin-{story}.html"
    return {
        "id": article_id, "source_id": source_id, "url": url, "url_key": url,
        "title": f"Chuyển đổi số: bài {story}", "text": f"Nội dung bài {story} bản {copy}.",
        "published": None, "published_at": START + timedelta(minutes=story),
        "province": "Hưng Yên", "tags": [], "raw_html": zlib.compress(b"<html></html>"),
        "content_hash": f"{story}", "fetched_at": START, "relevant": relevant,
        "topic_score": 1.0, "topic_matches": {"chuyển đổi số": 1}, "story_id": story,
    }


def _claim(
    engine: Engine, consumer: str, limit: int, lease: float = 60
) -> list[queue.ClaimedStory]:
    with session_scope(session_factory(engine)) as session:
        return queue.claim(session, consumer, limit, lease)


def _ack(engine: Engine, consumer: str, ids: list[int]) -> list[int]:
    with session_scope(session_factory(engine)) as session:
        return queue.ack(session, consumer, ids)


def test_two_parallel_workers_get_every_one_of_1000_stories_exactly_once(engine: Engine) -> None:
    add_stories(engine, 1000)

    def work() -> list[int]:
        taken: list[int] = []
        while batch := _claim(engine, "nlp", 7):
            ids = [item.story_id for item in batch]
            taken += ids
            assert sorted(_ack(engine, "nlp", ids)) == sorted(ids)
        return taken

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: work(), range(2))
    assert first and second  # both really worked
    counts = Counter(first + second)
    assert set(counts) == set(range(1, 1001))
    assert max(counts.values()) == 1


def test_concurrent_claims_come_back_full_until_the_stories_run_out(engine: Engine) -> None:
    """Eight workers claim at once, never acking: no claim is cut short by another's. (The race
    this guards against, a claim whose snapshot predates another's commit, depends on timing:
    `python -m bench api` met it on PostgreSQL, 3 empty claims of 40, before CLAIM_ROUNDS.)"""
    add_stories(engine, 800)
    limit, workers = 5, 8

    def work() -> list[list[int]]:
        batches: list[list[int]] = []
        while not batches or batches[-1]:
            batches.append([item.story_id for item in _claim(engine, "nlp", limit)])
        return batches

    with ThreadPoolExecutor(workers) as pool:
        batches = [batch for done in pool.map(lambda _: work(), range(workers)) for batch in done]
    taken = Counter(story for batch in batches for story in batch)
    assert set(taken) == set(range(1, 801)) and max(taken.values()) == 1
    short = [len(batch) for batch in batches if 0 < len(batch) < limit]
    assert len(short) <= workers, short  # only at the end, when fewer than `limit` were left


def test_a_worker_that_dies_without_ack_loses_nothing(engine: Engine) -> None:
    add_stories(engine, 6)
    dead = _claim(engine, "nlp", 3, lease=0.5)  # then the worker dies: no ack, no release
    alive = _claim(engine, "nlp", 10)
    assert {c.story_id for c in alive} == {4, 5, 6}  # the leased ones are not handed out twice
    _ack(engine, "nlp", [c.story_id for c in alive])
    assert _claim(engine, "nlp", 10) == []
    time.sleep(0.6)  # the dead worker's lease expires
    retaken = _claim(engine, "nlp", 10)
    assert [c.story_id for c in retaken] == [c.story_id for c in dead]
    assert {c.attempts for c in retaken} == {2}
    _ack(engine, "nlp", [c.story_id for c in retaken])
    with session_factory(engine)() as session:
        assert queue.status(session, "nlp") == queue.ConsumerStatus("nlp", 6, 0, 0)


def test_consumers_are_independent_and_only_relevant_stories_are_queued(engine: Engine) -> None:
    add_stories(engine, 10, relevant_every=2)
    nlp = _claim(engine, "nlp", 100)
    archive = _claim(engine, "archive", 100)
    assert [c.story_id for c in nlp] == [c.story_id for c in archive] == [2, 4, 6, 8, 10]


def test_release_hands_stories_back_and_ack_is_idempotent(engine: Engine) -> None:
    add_stories(engine, 3)
    claimed = [c.story_id for c in _claim(engine, "nlp", 2)]
    with session_scope(session_factory(engine)) as session:
        assert queue.release(session, "nlp", claimed) == claimed
    again = _claim(engine, "nlp", 5)
    assert [c.story_id for c in again] == [1, 2, 3]
    assert _ack(engine, "nlp", [1, 2, 3]) == [1, 2, 3]
    assert _ack(engine, "nlp", [1, 2, 3, 99]) == []  # done already, or never claimed
    with session_scope(session_factory(engine)) as session:
        assert queue.release(session, "nlp", [1]) == []  # an acked story stays done


def test_a_claimed_story_carries_text_metadata_every_copy_and_raw_html_links(
    engine: Engine,
) -> None:
    add_stories(engine, 1, copies=2)
    (item,) = _claim(engine, "nlp", 1)
    record = json.loads(json.dumps(item.record(), ensure_ascii=False))
    assert record["id"] == 1 and record["attempts"] == 1 and record["lease_expires_at"]
    representative = record["representative"]
    assert representative["text"].startswith("Nội dung bài 1")
    assert representative["title"] == "Chuyển đổi số: bài 1"
    assert representative["raw_html"] == f"/articles/{representative['id']}/raw"
    assert sorted(c["source"] for c in record["copies"]) == ["site0", "site1"]
    for copy in record["copies"]:
        assert copy["url"].startswith("https://") and copy["raw_html"].endswith("/raw")


@pytest.mark.parametrize(
    ("consumer", "limit", "lease"), [("", 1, 60), ("nlp", 0, 60), ("nlp", 5000, 60), ("nlp", 1, 0)]
)
def test_bad_claims_are_refused_with_a_reason(
    session: Session, consumer: str, limit: int, lease: float
) -> None:
    with pytest.raises(queue.QueueError):
        queue.claim(session, consumer, limit, lease)


def test_cli_claim_ack_release_status(engine: Engine, database_url: str, monkeypatch) -> None:
    add_stories(engine, 3)
    monkeypatch.setenv("DTMON_DATABASE_URL", database_url)
    runner = CliRunner()

    claimed = runner.invoke(app, ["queue", "claim", "--consumer", "nlp", "--limit", "2"])
    assert claimed.exit_code == 0, claimed.output
    lines = [json.loads(line) for line in claimed.stdout.splitlines()]
    assert [line["id"] for line in lines] == [1, 2]
    assert lines[0]["representative"]["title"] == "Chuyển đổi số: bài 1"

    released = runner.invoke(app, ["queue", "release", "--consumer", "nlp", "2"])
    assert released.exit_code == 0, released.output
    acked = runner.invoke(app, ["queue", "ack", "--consumer", "nlp", "1"])
    assert acked.exit_code == 0, acked.output
    shown = runner.invoke(app, ["queue", "status", "--consumer", "nlp", "--json"])
    assert json.loads(shown.stdout) == {"consumer": "nlp", "done": 1, "leased": 0, "available": 2}

    refused = runner.invoke(app, ["queue", "claim", "--consumer", "nlp", "--limit", "0"])
    assert refused.exit_code != 0
    assert "limit" in refused.output
