"""Storing in group transactions gives what one transaction per article gave: the mirror's gold
articles (each twice, as a crawl meets reposts and refetches) stored as the crawl's writer stores
them (groups of 8, the analysis computed beforehand as the extraction processes do) end with the
same articles, topic results, stories and alert rows as stored one by one; an article that fails
fails alone, and nothing of a group is visible before its commit."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from monitor.alerts import load_rules
from monitor.analysis import analyse_article
from monitor.ingest import ingest_article
from monitor.storing import StoreJob, store_article
from monitor.topics import load_topics
from monitor.writer import NotStored, store_group
from storage.db import init_db, make_engine, session_factory, session_scope
from storage.models import AlertOutbox, Article, Story
from storage.repository import ArticleData

RULES = "rules: [{name: all, relevant_only: false, urls: ['json://127.0.0.1:9/hook']}, " \
        "{name: relevant, urls: ['json://127.0.0.1:9/hook']}]\n"


def article_data(record: dict) -> ArticleData:
    return ArticleData(source_name=record["host"], url=record["url"], url_key=record["url"],
                       title=record["title"], text="\n".join(record["body"]),
                       province=record["province"], published=record["published"],
                       urls=list(record.get("alternate_urls") or []))


def arrivals(gold: dict[str, dict]) -> list[dict]:
    """The gold records in a crawl's order, each met twice (the second time already stored)."""
    records = [gold[key] for key in sorted(gold)]
    return records + records[::-1]


def stored_state(sessions: sessionmaker[Session]) -> dict:
    """Everything storing decides, by URL (ids differ between databases)."""
    with sessions() as session:
        url_of = dict(session.execute(select(Article.id, Article.url)).all())
        articles = {a.url: (a.title, a.relevant, a.topic_score, a.topic_matches, a.content_hash)
                    for a in session.scalars(select(Article))}
        members: dict[int, set[str]] = {}
        for article_id, story_id in session.execute(select(Article.id, Article.story_id)):
            members.setdefault(story_id, set()).add(url_of[article_id])
        stories = {(frozenset(members[story.id]), url_of[story.representative_id])
                   for story in session.scalars(select(Story))}
        alerts = sorted((row.rule, url_of[row.article_id], tuple(sorted(members[row.story_id])))
                        for row in session.scalars(select(AlertOutbox)))
    return {"articles": articles, "stories": stories, "alerts": alerts}


def test_group_transactions_store_what_one_by_one_stores(engine: Engine, tmp_path: Path,
                                                         gold: dict[str, dict]) -> None:
    topics = load_topics()
    rules_path = tmp_path / "alerts.yaml"
    rules_path.write_text(RULES, "utf-8")
    rules = load_rules(rules_path)
    reference = make_engine(f"sqlite:///{tmp_path / 'one-by-one.db'}")
    init_db(reference)
    one_by_one = session_factory(reference)
    for record in arrivals(gold):
        with session_scope(one_by_one) as session:
            ingest_article(session, article_data(record), topics, rules)

    batched = session_factory(engine)
    jobs = []
    for record in arrivals(gold):
        data = article_data(record)
        jobs.append(StoreJob(data, analyse_article(data.title, data.text), {data.url_key}))
    outcomes = [outcome for start in range(0, len(jobs), 8)
                for outcome in store_group(batched, lambda session, job: store_article(
                    session, job, topics, rules), jobs[start:start + 8])]
    created = [outcome.result.created for outcome in outcomes]

    assert created == [True] * len(gold) + [False] * len(gold)
    expected, got = stored_state(one_by_one), stored_state(batched)
    assert got["articles"] == expected["articles"]
    assert got["stories"] == expected["stories"]
    assert len(expected["stories"]) < len(gold)  # the mirror's reposts joined their stories
    assert got["alerts"] == expected["alerts"]
    assert any(rule == "relevant" for rule, *_ in expected["alerts"])
    reference.dispose()


def test_a_failing_article_fails_alone_and_the_group_commits(engine: Engine,
                                                              gold: dict[str, dict]) -> None:
    topics = load_topics()
    sessions = session_factory(engine)
    records = [gold[key] for key in sorted(gold)][:5]
    bad_url = records[2]["url"]

    def store(session: Session, job: StoreJob):
        result = store_article(session, job, topics, None)
        if job.data.url == bad_url:  # fails after its rows were written: all rolled back
            raise ValueError("a bad article")
        return result

    outcomes = store_group(sessions, store, [StoreJob(article_data(r), None, set())
                                             for r in records])

    assert outcomes[2] == NotStored("ValueError: a bad article")
    assert all(o.result.created for i, o in enumerate(outcomes) if i != 2)
    with sessions() as session:
        stored = set(session.scalars(select(Article.url)))
    assert stored == {r["url"] for r in records} - {bad_url}


def test_nothing_of_a_group_is_visible_before_its_commit(engine: Engine,
                                                         gold: dict[str, dict]) -> None:
    topics = load_topics()
    sessions = session_factory(engine)
    [first, second] = [gold[key] for key in sorted(gold)][:2]
    second_stored, release = threading.Event(), threading.Event()

    def store(session: Session, job: StoreJob):
        result = store_article(session, job, topics, None)
        if job.data.url == second["url"]:
            second_stored.set()
            release.wait(10)
        return result

    group = [StoreJob(article_data(r), None, set()) for r in (first, second)]
    outcomes: list = []
    writer = threading.Thread(target=lambda: outcomes.extend(store_group(sessions, store, group)))
    writer.start()
    assert second_stored.wait(10)
    with sessions() as session:
        assert session.scalars(select(Article.url)).all() == []
    assert outcomes == []  # not even the first article is reported stored yet
    release.set()
    writer.join()
    assert [o.result.created for o in outcomes] == [True, True]
