"""Alert messages: plain UTF-8 text (Vietnamese kept as is) that reads well in a mail, a chat
and a JSON webhook alike."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from storage.models import AlertOutbox, Article
from vntext import normalize_text

EXCERPT_CHARS = 400
EXCERPT_LINES = 3


@dataclass(frozen=True)
class Message:
    """A rendered alert."""

    title: str
    body: str


def story_message(article: Article) -> Message:
    """The alert of one story, told through the copy that caused it."""
    return Message(f"[dtmon] {article.title}", "\n".join(_story_lines(article, with_excerpt=True)))


def digest_message(rule: str, rows: list[AlertOutbox], articles: dict[int, Article]) -> Message:
    """One message listing every alert of a digest window, oldest first."""
    window_end = rows[0].due_at.strftime("%Y-%m-%d %H:%M UTC")
    lines: list[str] = []
    for number, row in enumerate(rows, start=1):
        item = (_story_lines(articles[row.article_id], with_excerpt=False)
                if row.article_id in articles else [_operator_text(row)])
        lines += [f"{number}. {item[0]}", *(f"   {line}" for line in item[1:]), ""]
    title = f"[dtmon] {rule}: {len(rows)} alert(s) until {window_end}"
    return Message(title, "\n".join(lines).rstrip())


def operator_message(row: AlertOutbox) -> Message:
    """An operator alert (source failing, layout drift …)."""
    payload = row.payload or {}
    return Message(f"[dtmon operator] {payload.get('kind')}: {payload.get('source')}",
                   _operator_text(row))


def render(session: Session, rule: str, digest: bool, rows: list[AlertOutbox]) -> Message:
    """The message of one delivery (one row, or a digest window's rows)."""
    ids = [row.article_id for row in rows if row.article_id is not None]
    articles = {a.id: a for a in session.query(Article).filter(Article.id.in_(ids))}
    if digest:
        return digest_message(rule, rows, articles)
    row = rows[0]
    if row.article_id in articles:
        return story_message(articles[row.article_id])
    return operator_message(row)


def excerpt(text: str) -> str:
    """The first lines of a body, cut at a word near ``EXCERPT_CHARS``."""
    lines = [line.strip() for line in normalize_text(text).splitlines() if line.strip()]
    short = "\n".join(lines[:EXCERPT_LINES])
    if len(short) <= EXCERPT_CHARS:
        return short if len(lines) <= EXCERPT_LINES else short + " …"
    return short[:EXCERPT_CHARS].rsplit(" ", 1)[0] + " …"


def _story_lines(article: Article, *, with_excerpt: bool) -> list[str]:
    where = " · ".join(part for part in (article.source.name, article.province) if part)
    terms = ", ".join(
        f"{term} ({count})" for term, count in sorted(
            (article.topic_matches or {}).items(), key=lambda item: (-item[1], item[0]))
    )
    lines = [article.title, f"Source: {where}", f"Published: {article.published or 'unknown'}",
             f"Link: {article.url}"]
    if terms:
        lines.append(f"Topic terms: {terms}")
    if with_excerpt:
        lines += ["", excerpt(article.text)]
    return lines


def _operator_text(row: AlertOutbox) -> str:
    payload = row.payload or {}
    return f"{payload.get('kind')} on {payload.get('source')}: {payload.get('message')}"
