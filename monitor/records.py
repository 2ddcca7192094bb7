"""Plain-dict views of stored rows, the one shape used by `--json` output, exports and the API.

Instants are ISO 8601 with their offset (Vietnam time); a page's date keeps its own form (a
bare day stays a day, see monitor.clock)."""

from __future__ import annotations

from typing import Any

from monitor.clock import iso, published_iso
from storage.models import Article, CrawlRun, CrawlRunSource, OwedArticle


def article_record(article: Article, *, with_text: bool = True) -> dict[str, Any]:
    """An article as a JSON-ready dict: canonical ``url`` and every ``urls`` that led to it."""
    record: dict[str, Any] = {
        "id": article.id,
        "url": article.url,
        "urls": [entry.url for entry in article.urls],
        "title": article.title,
        "published": published_iso(article.published),
        "author": article.author,
        "original_source": article.original_source,
        "province": article.province,
        "source": article.source.name,
        "tags": list(article.tags or []),
        "relevant": article.relevant,
        "topic_score": article.topic_score,
        "matched": dict(article.topic_matches or {}),
        "story_id": article.story_id,
        "fetched_at": iso(article.fetched_at),
    }
    if with_text:
        record["text"] = article.text
    return record


def run_source_record(stats: CrawlRunSource) -> dict[str, Any]:
    """One source's counters within a crawl run."""
    return {
        "source": stats.source_name,
        "pages_fetched": stats.pages_fetched,
        "not_modified": stats.not_modified,
        "articles_new": stats.articles_new,
        "articles_seen": stats.articles_seen,
        "errors": stats.errors,
        "error_messages": list(stats.error_messages or []),
        "stats": dict(stats.stats or {}),
    }


def run_record(run: CrawlRun) -> dict[str, Any]:
    """A crawl run with its per-source counters."""
    return {
        "id": run.id,
        "trigger": run.trigger,
        "status": run.status,
        "pid": run.pid,
        "host": run.host,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "sources": [run_source_record(stats) for stats in run.sources],
    }


def owed_record(owed: OwedArticle) -> dict[str, Any]:
    """An owed article: where it was found, how often it failed, why, and when it is retried."""
    return {
        "url": owed.url,
        "source": owed.source_name,
        "found_on": owed.found_on,
        "state": owed.state,
        "attempts": owed.attempts,
        "last_error": owed.last_error,
        "first_seen_at": iso(owed.first_seen_at),
        "last_attempt_at": iso(owed.last_attempt_at),
        "next_attempt_at": iso(owed.next_attempt_at) if owed.state == "owed" else None,
    }


def raw_html_path(article_id: int) -> str:
    """The API path serving an article's HTML as fetched (see monitor.api)."""
    return f"/articles/{article_id}/raw"


def copy_record(article: Article) -> dict[str, Any]:
    """One place a story appeared: the copy's id, URLs, source, province, date and title."""
    return {
        "article_id": article.id,
        "url": article.url,
        "urls": [entry.url for entry in article.urls],
        "source": article.source.name,
        "province": article.province,
        "published": published_iso(article.published),
        "title": article.title,
        "relevant": article.relevant,
        "raw_html": raw_html_path(article.id),
    }


def story_record(
    story_id: int, representative: Article, copies: list[Article], *, with_text: bool = True
) -> dict[str, Any]:
    """A story: its representative (earliest copy) in full, then every copy, earliest first."""
    return {
        "id": story_id,
        "title": representative.title,
        "published": published_iso(representative.published),
        "relevant": any(copy.relevant for copy in copies),
        "matched": dict(representative.topic_matches or {}),
        "representative": {
            **article_record(representative, with_text=with_text),
            "raw_html": raw_html_path(representative.id),
        },
        "copies": [copy_record(copy) for copy in copies],
    }
