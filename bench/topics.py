"""Topic scoring speed: articles per second on one core for 5 kB bodies.

Bodies are built from the labelled development set (real Vietnamese news sentences), each a
different rotation of its paragraphs cut to 5,000 characters, with the article's own title.
The baseline, measured in the same run, is the naive design: one regular expression per
configured phrase (word-bounded, case-insensitive) searched over the raw text, which also
misses the other tone-mark spelling. Rates are in process CPU time, so other load on the machine
does not distort them; each is the best of ``PASSES`` passes over the articles (as ``timeit``
advises: the speed of these virtual machines drifts by up to half between seconds), the two
scorers taking turns. ``DTMON_BENCH_TOPICS_ARTICLES`` sets the article count.
"""

from __future__ import annotations

import json
import os
import re
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

from monitor.topics import TopicModel, load_topics

ARTICLES = int(os.environ.get("DTMON_BENCH_TOPICS_ARTICLES", "1000"))
PASSES = 5
BODY_CHARS = 5_000
TARGET_PER_SECOND = 2_000
DEV_SET = Path(__file__).resolve().parents[1] / "tests" / "data" / "topics_dev.jsonl"


def corpus(count: int) -> list[tuple[str, str]]:
    """``count`` (title, ~5 kB body) pairs built from the development set's texts."""
    rows = [json.loads(line) for line in DEV_SET.read_text("utf-8").splitlines() if line]
    sentences = [s.strip() + "." for row in rows for s in row["text"].split(". ") if s.strip()]
    articles = []
    for i in range(count):
        start = (i * 7) % len(sentences)
        body, k = [], start
        while sum(len(s) + 1 for s in body) < BODY_CHARS:
            body.append(sentences[k % len(sentences)])
            k += 1
        articles.append((rows[i % len(rows)]["title"], " ".join(body)[:BODY_CHARS]))
    return articles


def naive_scorer(model: TopicModel) -> Callable[[str, str], float]:
    """Per-phrase regexes over the raw NFC text: the design the token matcher replaces."""
    config = model.config
    weighted = [(p, w) for p, w in config.terms.items()]
    weighted += [(p, -w) for p, w in config.negatives.items()]
    patterns = [
        (re.compile(rf"(?<!\w){re.escape(p.lower())}(?!\w)", re.IGNORECASE), w) for p, w in weighted
    ]

    def score(title: str, text: str) -> float:
        title = unicodedata.normalize("NFC", title)
        text = unicodedata.normalize("NFC", text)
        total = 0.0
        for pattern, weight in patterns:
            total += config.title_boost * weight * bool(pattern.search(title))
            total += weight * len(pattern.findall(text))
        return total

    return score


def per_second(score: Callable[[str, str], object], articles: list[tuple[str, str]]) -> float:
    """Articles scored per CPU second in one pass (one thread)."""
    started = time.process_time()
    for title, text in articles:
        score(title, text)
    return len(articles) / (time.process_time() - started)


def run() -> list[dict]:
    """Scoring throughput of the topic model next to the naive regex baseline."""
    model = load_topics()
    articles = corpus(ARTICLES)
    # The baseline is ~50 times slower: a fifth of the articles gives its rate well enough.
    scorers = {"ours": (model.score, articles),
               "baseline": (naive_scorer(model), articles[: len(articles) // 5])}
    for score, sample in scorers.values():  # warm up (caches, allocator)
        per_second(score, sample[:20])
    best = dict.fromkeys(scorers, 0.0)
    for _ in range(PASSES):
        for name, (score, sample) in scorers.items():
            best[name] = max(best[name], per_second(score, sample))
    ours, baseline = best["ours"], best["baseline"]
    return [
        {
            "metric": f"topic scoring, {BODY_CHARS:,}-character bodies, one core "
                      f"(best of {PASSES} passes)",
            "value": round(ours),
            "unit": "articles/s",
            "baseline": round(baseline),
            "ratio": round(ours / baseline, 1),
            "target": TARGET_PER_SECOND,
        }
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
