"""Explainable topic scoring: is an article about digital transformation ("chuyển đổi số")?

The model is ``config/topics.yaml`` (see its header for the formula): weighted terms, negative
phrases, neutral phrases and a threshold. Phrases are matched on the keys of
:func:`crawler.vietnamese.match_tokens` in one left-to-right pass over the tokens, walking a
trie of phrase tokens and keeping the longest phrase found; so a longer phrase shadows the shorter
ones inside it, and a phrase never matches inside a word. Only the title and the extracted body
are scored.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from crawler.vietnamese import match_tokens
from storage.models import Article

TOPICS_PATH_ENV = "DTMON_TOPICS"
DEFAULT_TOPICS_PATH = Path(__file__).resolve().parents[1] / "config" / "topics.yaml"
NEGATIVE_MARK = "-"  # prefix of a negative phrase in ``TopicResult.matched``
_SO = match_tokens("số")[0]
_END = ""  # trie key of a complete phrase; never a token
_SENTENCE_MARK = "_"  # a token of its own that no phrase contains
_SENTENCE_END = re.compile(r"[.!?…]\s|\n")  # cheap: punctuation never reaches a token
_RESCORE_BATCH = 500

Weight = Annotated[float, Field(gt=0)]


class TopicsConfigError(ValueError):
    """The topics file is missing, unreadable or invalid; ``str()`` names the file and field."""


class TopicsConfig(BaseModel):
    """Schema of ``config/topics.yaml``."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(gt=0)
    title_boost: float = Field(ge=0)
    focus_share: float = Field(gt=0, le=1)
    focus_min_weight: float = Field(ge=0)
    number_sense_after_so: list[str] = []
    terms: dict[str, Weight] = Field(min_length=1)
    negatives: dict[str, Weight] = {}
    neutral: list[str] = []

    @model_validator(mode="after")
    def _phrases_are_distinct_words(self) -> TopicsConfig:
        seen: dict[tuple[str, ...], str] = {}
        for section, phrases in self._sections():
            for phrase in phrases:
                key = tuple(match_tokens(phrase))
                if not key:
                    raise ValueError(f"{section}: {phrase!r} contains no word")
                if key in seen:
                    raise ValueError(f"{section}: {phrase!r} is the same phrase as {seen[key]}")
                seen[key] = f"{section}: {phrase!r}"
        for word in self.number_sense_after_so:
            if len(match_tokens(word)) != 1:
                raise ValueError(f"number_sense_after_so: {word!r} must be exactly one word")
        return self

    def _sections(self) -> list[tuple[str, list[str]]]:
        return [
            ("terms", list(self.terms)),
            ("negatives", list(self.negatives)),
            ("neutral", self.neutral),
        ]


@dataclass(frozen=True)
class _Phrase:
    text: str  # as configured, shown to users
    tokens: tuple[str, ...]
    weight: float  # > 0 evidence for, < 0 evidence against, 0 neutral

    @property
    def label(self) -> str:
        return NEGATIVE_MARK + self.text if self.weight < 0 else self.text


@dataclass
class TopicResult:
    """The verdict on one article, with everything needed to explain it."""

    score: float
    relevant: bool
    threshold: float
    # Configured phrase -> occurrences in title and body; negatives prefixed with "-".
    matched: dict[str, int]
    title_points: dict[str, float] = field(default_factory=dict)  # phrase present in the title
    body_points: dict[str, tuple[int, float]] = field(default_factory=dict)  # (count, points)
    sentences: int = 0
    focus_sentences: int = 0  # sentences holding a topic term of at least focus_min_weight
    focus_factor: float = 1.0  # what the positive body evidence was multiplied by
    neutral: dict[str, int] = field(default_factory=dict)

    def explain(self) -> str:
        """One human-readable line: the verdict and what contributed to the score."""
        verdict = "relevant" if self.relevant else "not relevant"
        sign = ">=" if self.relevant else "<"
        parts = [f"{verdict}: score {self.score:.2f} {sign} {self.threshold:g}"]
        if self.title_points:
            ordered = sorted(self.title_points.items(), key=lambda item: -abs(item[1]))
            parts.append("title: " + ", ".join(f"{p} ({v:+.1f})" for p, v in ordered))
        if self.body_points:
            ordered = sorted(self.body_points.items(), key=lambda item: -abs(item[1][1]))
            listed = ", ".join(f"{p} x{n} ({v:+.1f})" for p, (n, v) in ordered)
            parts.append(
                f"body (topic terms in {self.focus_sentences} of {self.sentences} sentences, "
                f"focus x{self.focus_factor:.2f}): {listed}"
            )
        if not self.title_points and not self.body_points:
            parts.append("no topic term found")
        if self.neutral:
            parts.append("ignored " + ", ".join(f"{p} x{n}" for p, n in self.neutral.items()))
        return "; ".join(parts)


class TopicModel:
    """A compiled topic configuration; :meth:`score` judges one article."""

    def __init__(self, config: TopicsConfig) -> None:
        self.config = config
        self._number_words = {match_tokens(w)[0] for w in config.number_sense_after_so}
        phrases = [_Phrase(t, tuple(match_tokens(t)), w) for t, w in config.terms.items()]
        phrases += [_Phrase(t, tuple(match_tokens(t)), -w) for t, w in config.negatives.items()]
        phrases += [_Phrase(t, tuple(match_tokens(t)), 0.0) for t in config.neutral]
        # A token trie: each node maps the next token to its child; _END marks a whole phrase.
        self._trie: dict = {}
        for phrase in phrases:
            node = self._trie
            for token in phrase.tokens:
                node = node.setdefault(token, {})
            node[_END] = phrase

    def find(self, tokens: list[str]) -> Counter[_Phrase]:
        """Count the configured phrases in ``tokens``, leftmost-longest, never overlapping."""
        return Counter(phrase for _, phrase in self._matches(tokens))

    def _matches(self, tokens: list[str]) -> Iterator[tuple[int, _Phrase]]:
        """(start index, phrase) of each phrase found, left to right."""
        root = self._trie
        i, end = 0, len(tokens)
        while i < end:
            node = root.get(tokens[i])
            longest: _Phrase | None = None
            j = i + 1
            while node is not None:
                phrase = node.get(_END)
                if phrase is not None and not self._number_sense(phrase, tokens, j):
                    longest = phrase
                node = node.get(tokens[j]) if j < end else None
                j += 1
            if longest is None:
                i += 1
            else:
                yield i, longest
                i += len(longest.tokens)

    def _number_sense(self, phrase: _Phrase, tokens: list[str], after: int) -> bool:
        """Whether the phrase's final "số" reads "number" because of the word after it."""
        if phrase.tokens[-1] != _SO or after >= len(tokens):
            return False
        following = tokens[after]
        return following.isdigit() or following in self._number_words

    def score(self, title: str, text: str) -> TopicResult:
        """Score an article from its extracted title and body text."""
        cfg = self.config
        title_found = self.find(match_tokens(title or ""))
        # One tokenisation of the whole body, with a mark token where each sentence ends.
        tokens = match_tokens(_SENTENCE_END.sub(f" {_SENTENCE_MARK} ", text or ""))
        marks = [i for i, token in enumerate(tokens) if token == _SENTENCE_MARK]
        bounds = [-1, *marks, len(tokens)]
        sentences = sum(1 for start, stop in itertools.pairwise(bounds) if stop - start > 1)
        body_found: Counter[_Phrase] = Counter()
        focused: set[int] = set()  # indexes of the sentences holding a focus term
        for start, phrase in self._matches(tokens):
            body_found[phrase] += 1
            if phrase.weight >= cfg.focus_min_weight:
                focused.add(bisect.bisect(marks, start))
        focus = len(focused)
        factor = min(1.0, focus / (sentences * cfg.focus_share)) ** 2 if sentences else 0.0
        title_points = {p.label: cfg.title_boost * p.weight for p in title_found if p.weight}
        body_points = {
            p.label: (n, p.weight * (1 + math.log(n)) * (factor if p.weight > 0 else 1.0))
            for p, n in body_found.items()
            if p.weight
        }
        body_score = sum(points for _, points in body_points.values())
        score = round(sum(title_points.values()) + body_score, 4)
        matched: Counter[str] = Counter()
        neutral: Counter[str] = Counter()
        for phrase, n in (title_found + body_found).items():
            (matched if phrase.weight else neutral)[phrase.label] += n
        return TopicResult(
            score=score,
            relevant=score >= cfg.threshold,
            threshold=cfg.threshold,
            matched=dict(matched.most_common()),
            title_points=title_points,
            body_points=body_points,
            sentences=sentences,
            focus_sentences=focus,
            focus_factor=factor,
            neutral=dict(neutral),
        )


def topics_path() -> Path:
    """The configured topics file: ``$DTMON_TOPICS``, else the repository's config/topics.yaml."""
    return Path(os.environ.get(TOPICS_PATH_ENV) or DEFAULT_TOPICS_PATH)


def load_topics(path: Path | str | None = None) -> TopicModel:
    """Load and validate a topics file (default :func:`topics_path`).

    Raises :class:`TopicsConfigError` naming the file and the offending field.
    """
    path = Path(path) if path is not None else topics_path()
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        raise TopicsConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise TopicsConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise TopicsConfigError(f"{path}: expected a mapping of settings at the top level")
    try:
        return TopicModel(TopicsConfig.model_validate(raw))
    except ValidationError as exc:
        raise TopicsConfigError(f"{path}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


@dataclass
class RescoreSummary:
    """What a rescore changed."""

    articles: int = 0
    updated: int = 0  # score, relevance or matches differ from what was stored
    promoted: int = 0  # now relevant, was not
    demoted: int = 0  # was relevant, now is not
    relevant: int = 0  # relevant after the rescore


def rescore_articles(
    session: Session, model: TopicModel, batch: int = _RESCORE_BATCH
) -> RescoreSummary:
    """Recompute topic_score, relevant and topic_matches of every stored article.

    Reads the stored title and text only (no refetch), in primary-key pages of ``batch`` rows,
    and commits the changed rows after each page, so memory stays flat and a long rescore never
    holds one huge transaction. Paging by key rather than a streaming cursor keeps working on
    PostgreSQL, where committing closes a server-side cursor.
    """
    summary = RescoreSummary()
    last_id = 0
    columns = (
        Article.id,
        Article.title,
        Article.text,
        Article.topic_score,
        Article.relevant,
        Article.topic_matches,
    )
    while True:
        query = select(*columns).where(Article.id > last_id).order_by(Article.id).limit(batch)
        rows = session.execute(query).all()
        if not rows:
            return summary
        changes = [change for row in rows if (change := _rescore_row(row, model, summary))]
        if changes:
            session.execute(update(Article), changes)
        session.commit()
        last_id = rows[-1].id


def _rescore_row(row: Row, model: TopicModel, summary: RescoreSummary) -> dict | None:
    result = model.score(row.title, row.text)
    summary.articles += 1
    summary.relevant += result.relevant
    was = bool(row.relevant)
    summary.promoted += result.relevant and not was
    summary.demoted += was and not result.relevant
    stored = (row.topic_score, row.relevant, row.topic_matches)
    if stored == (result.score, result.relevant, result.matched):
        return None
    summary.updated += 1
    return {
        "id": row.id,
        "topic_score": result.score,
        "relevant": result.relevant,
        "topic_matches": result.matched,
    }
