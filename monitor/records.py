"""Plain-dict views of stored rows, the one shape used by `--json` output, exports and the API."""

from __future__ import annotations

from typing import Any

from storage.models import Article, CrawlRun, CrawlRunSource


def article_record(article: Article, *, with_text: bool = True) -> dict[str, Any]:
    """An article as a JSON-ready dict: canonical ``url`` and every ``urls`` that led to it."""
    record: dict[str, Any] = {
        "id": article.id,
        "url": article.url,
        "urls": [entry.url for entry in article.urls],
        "title": article.title,
        "published": article.published,
        "author": article.author,
        "original_source": article.original_source,
        "province": article.province,
        "source": article.source.name,
        "tags": list(article.tags or []),
        "relevant": article.relevant,
        "topic_score": article.topic_score,
        "matched": dict(article.topic_matches or {}),
        "story_id": article.story_id,
        "fetched_at": article.fetched_at.isoformat() if article.fetched_at else None,
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
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "sources": [run_source_record(stats) for stats in run.sources],
    }
