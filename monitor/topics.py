"""Explainable topic scoring: is an article about digital transformation ("chuyển đổi số")?

The model is ``config/topics.yaml`` (see its header for the formula): weighted terms, negative
phrases, neutral phrases and a threshold. Phrases are matched on the key of the text
(:func:`vntext.match_key`: case, tone-mark convention and Unicode form folded away)
in one left-to-right pass of a single regular expression built as a trie of all phrases, which
keeps the longest phrase found at each word; so a longer phrase shadows the shorter ones inside
it, and a phrase never matches inside a word. Only the title and the extracted body are scored.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import ahocorasick_rs
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vntext import SENTENCE_MARK, match_key, match_tokens, sentence_key

TOPICS_PATH_ENV = "DTMON_TOPICS"
DEFAULT_TOPICS_PATH = Path(__file__).resolve().parents[1] / "config" / "topics.yaml"
NEGATIVE_MARK = "-"  # prefix of a negative phrase in ``TopicResult.matched``
_SO = match_key("số")
_NUMBER_SENSE = "#"  # appended to the key of a "số" that means "number"
# A "số" directly followed by punctuation ends its phrase ("Kết quả chuyển đổi số: 98% hồ sơ"), so
# the number after the mark is not the "number" it counts. Keys drop punctuation, so the mark is
# turned into a token of its own first: "_" is a word character, kept in the key, and in no
# phrase. The pattern starts with the literal "ố" so the engine can skip ahead to it.
_SO_BEFORE_MARK = re.compile(r"ố(?<=[sS]ố)(?=[^\w\s])")
_SO_BEFORE_MARK_UPPER = re.compile(r"Ố(?<=SỐ)(?=[^\w\s])")
_MARK_TOKEN = " _"

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


@dataclass(frozen=True, eq=False)  # each phrase is one object: identity hashing is cheap
class _Phrase:
    text: str  # as configured, shown to users
    key: str  # its match_key
    weight: float  # > 0 evidence for, < 0 evidence against, 0 neutral
    label: str = field(init=False)  # as shown in ``TopicResult.matched``

    def __post_init__(self) -> None:
        label = NEGATIVE_MARK + self.text if self.weight < 0 else self.text
        object.__setattr__(self, "label", label)


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
        number_words = [match_key(word) for word in config.number_sense_after_so]
        # The literal comes first, so the engine skips ahead to each "số" (the lookbehind after
        # it checks that it starts a word).
        self._number_so = re.compile(
            rf"{_SO}(?<![^ ]{_SO})(?= (?:\d+|{'|'.join(map(re.escape, number_words))})(?![^ ]))")
        phrases = [_Phrase(t, self._key(t), w) for t, w in config.terms.items()]
        phrases += [_Phrase(t, self._key(t), -w) for t, w in config.negatives.items()]
        phrases += [_Phrase(t, self._key(t), 0.0) for t in config.neutral]
        # One automaton finds every phrase and every sentence end, leftmost-longest and never
        # overlapping. Each word is wrapped in spaces of its own ("  " between words), so a
        # phrase only matches whole words and two adjacent phrases do not share a space.
        self._found: list[_Phrase | None] = [*phrases, None]  # None: the sentence mark
        self._automaton = ahocorasick_rs.AhoCorasick(
            [_spaced(p.key) for p in phrases] + [_spaced(SENTENCE_MARK)],
            matchkind=ahocorasick_rs.MATCHKIND_LEFTMOST_LONGEST)

    def _key(self, text: str) -> str:
        """The key phrases are found in: "số" followed by a number word reads "number" (``số
        3``, ``số lượng``) and gets a key of its own, so a phrase ending in "số" never ends
        there (while "Nghị quyết số 57", keyed the same way, still matches)."""
        return self._number_so.sub(_SO + _NUMBER_SENSE, match_key(_separate_so(text)))

    def _phrases_in(self, key: str) -> Iterator[tuple[int, _Phrase]]:
        """(sentence index, phrase) of each phrase in a :meth:`_key` string, left to right."""
        found = self._found
        sentence = 0
        for index, _, _ in self._automaton.find_matches_as_indexes(_spaced(key)):
            phrase = found[index]
            if phrase is None:
                sentence += 1
            else:
                yield sentence, phrase

    def find(self, text: str) -> Counter[_Phrase]:
        """Count the configured phrases in ``text``, leftmost-longest, never overlapping."""
        return Counter(phrase for _, phrase in self._phrases_in(self._key(text)))

    def score(self, title: str, text: str) -> TopicResult:
        """Score an article from its extracted title and body text."""
        cfg = self.config
        title_found = self.find(title or "")
        body = self._number_so.sub(_SO + _NUMBER_SENSE, sentence_key(_separate_so(text or "")))
        parts = body.split(SENTENCE_MARK)  # an empty sentence is "" or " " between two marks
        sentences = len(parts) - parts.count(" ") - parts.count("")
        body_found: Counter[_Phrase] = Counter()
        focused: set[int] = set()  # indexes of the sentences holding a focus term
        for sentence, phrase in self._phrases_in(body):
            body_found[phrase] += 1
            if phrase.weight >= cfg.focus_min_weight:
                focused.add(sentence)
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


def _separate_so(text: str) -> str:
    """``text`` with a token between "số" and the punctuation right after it (see
    :data:`_SO_BEFORE_MARK`), so that the number which may follow is not read as its object."""
    text = _SO_BEFORE_MARK.sub("ố" + _MARK_TOKEN, text)
    if "Ố" in text:
        text = _SO_BEFORE_MARK_UPPER.sub("Ố" + _MARK_TOKEN, text)
    return text


def _spaced(key: str) -> str:
    """``key`` with every word wrapped in spaces of its own (the automaton's haystack)."""
    return f" {key.replace(' ', '  ')} "


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
