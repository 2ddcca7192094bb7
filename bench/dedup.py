"""Near-duplicate index at scale: insert+query latency, memory and recall against brute force.

Fills the persistent LSH index (a real SQLite file, the dtmon schema) with synthetic
Vietnamese-like documents built from a syllable vocabulary, with injected syndicated copies
(extra title line, credit line, dropped last paragraph, changed caption). Then:

* times the per-article path of :func:`monitor.dedup.assign_story` on new documents at full
  size, with the same functions: fingerprint (shingles, MinHash, sentence hashes), bucket query
  and signature pre-filter, sentence query, exact verification of the candidates (their texts
  regenerated, where assign_story reads them from the articles table), bucket, fingerprint and
  sentence rows. The commit is timed apart: it is the article's transaction (its row, URLs,
  outbox), which the index only joins;
* measures recall of the index on the first ``SUBSET`` documents against the exact verdict over
  all their pairs (pairs sharing no shingle share nothing), and the latency of a brute-force
  scan;
* compares MinHash (exact Jaccard) with a 64-bit SimHash on the constructed pairs.

``DTMON_BENCH_DEDUP_DOCS`` sets the document count (default 1,000,000; 20,000 with ``--quick``).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import resource
import tempfile
import time
from collections import Counter, defaultdict
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from sqlalchemy import event

from monitor import dedup, similarity
from storage.db import init_db, make_engine, session_factory

QUICK = os.environ.get("DTMON_BENCH_QUICK") == "1"
DOCS = int(os.environ.get("DTMON_BENCH_DEDUP_DOCS", "20000" if QUICK else "1000000"))
SUBSET = 10_000
TIMED = 2_000
COPY_RATE = 0.05
FILL_BATCH = 5_000
DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
PAIRS_FILE = DATA / "dedup_pairs.jsonl"
# Real pages: the development parts, the spent held-out parts and the fourth held-out part,
# scored once (tests/data/README.md).
REAL_PAIRS_FILES = [DATA / f"dedup_real_{part}.jsonl"
                    for part in ("dev", "dev2", "dev3", "holdout", "holdout2", "holdout3",
                                 "holdout4")]

_INITIALS = "b c ch d đ g gh h k kh l m n ng nh p ph qu r s t th tr v x"
_RHYMES = (
    "a ai am an ang anh ao au ay e em en eng i im in inh iu o oi om on ong u ui um un ung"
    " ư ưa ưng ơ ơi ơn ê ên ênh ô ôi ông uy"
)
_TONES = ["", "\u0301", "\u0300", "\u0309", "\u0303", "\u0323"]
VOCAB = [i + r + t for i in _INITIALS.split() for r in _RHYMES.split() for t in _TONES]
# Zipf-like frequencies: a few syllables recur everywhere, as in real text.
_CUM_WEIGHTS = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(VOCAB))))


def _words(rng: random.Random, count: int) -> list[str]:
    return rng.choices(VOCAB, cum_weights=_CUM_WEIGHTS, k=count)


def _paragraphs(seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(_words(rng, rng.randint(30, 70))) + "." for _ in range(rng.randint(3, 6))]


def _copy(paragraphs: list[str], rng: random.Random) -> list[str]:
    """A syndicated copy: some of title line, credit line, dropped last paragraph, caption."""
    edited = list(paragraphs)
    if rng.random() < 0.5:
        edited = edited[:-1]
    if rng.random() < 0.5:
        edited.insert(1, "Ảnh: " + " ".join(_words(rng, 12)) + ".")
    if rng.random() < 0.5:
        edited.insert(0, " ".join(_words(rng, 10)).capitalize())
    if rng.random() < 0.5:
        edited.append(rng.choice(["Theo VOV", "Nguồn: Báo tỉnh", "(Theo VOV.VN)"]))
    return edited


def document(i: int) -> str:
    """Document ``i`` of the synthetic corpus (deterministic); some are copies of earlier ones."""
    rng = random.Random(-1 - i)
    if i > 0 and rng.random() < COPY_RATE:
        return "\n".join(_copy(_paragraphs(rng.randrange(i)), rng))
    return "\n".join(_paragraphs(i))


def _without_foreign_keys(dbapi_connection, _record) -> None:
    # The benchmark indexes documents, not Article rows: bucket rows point at no article.
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")


def _fingerprint(i: int) -> tuple[int, bytes, list[tuple[int, int]], tuple[int, ...]]:
    fingerprint = similarity.Fingerprint.of(document(i))
    return (i, similarity.signature_bytes(fingerprint.signature),
            similarity.band_buckets(fingerprint.signature), fingerprint.sentence_hashes)


def _fill(engine, count: int) -> float:
    """Bulk-load fingerprints and buckets of documents 1..count (ids = document numbers)."""
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        with Pool(os.cpu_count() or 2) as pool:
            batch: list[tuple[int, bytes, list[tuple[int, int]], tuple[int, ...]]] = []
            for item in pool.imap(_fingerprint, range(1, count + 1), chunksize=500):
                batch.append(item)
                if len(batch) == FILL_BATCH:
                    _insert_batch(cursor, batch)
                    raw.commit()
                    batch = []
            _insert_batch(cursor, batch)
            raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def _insert_batch(cursor, batch) -> None:
    cursor.executemany(
        "INSERT INTO article_fingerprints (article_id, signature) VALUES (?, ?)",
        [(i, sig) for i, sig, _, _ in batch],
    )
    cursor.executemany(
        "INSERT INTO lsh_buckets (band, bucket_hash, article_id) VALUES (?, ?, ?)",
        [(band, h, i) for i, _, buckets, _ in batch for band, h in buckets],
    )
    cursor.executemany(
        "INSERT INTO sentence_fingerprints (sentence_hash, article_id, source_id) VALUES (?, ?, 0)",
        [(h, i) for i, _, _, sentences in batch for h in sentences],
    )


def _timed_insert(session, article_id: int, text: str) -> tuple[float, float]:
    """assign_story's index work for one new document, then its commit: (ms, ms).

    The survivors' texts, which assign_story reads by primary key, are regenerated here outside
    the timing (generating one costs more than reading it).
    """
    started = time.perf_counter()
    fingerprint = similarity.Fingerprint.of(text)
    by_sentence = dedup.sentence_matches(session, fingerprint, 0, exclude=article_id)
    survivors = set(dedup.near_candidates(session, fingerprint, exclude=article_id))
    survivors |= by_sentence.article_ids
    paused = time.perf_counter()
    texts = [(i, i, document(i)) for i in sorted(survivors)]
    resumed = time.perf_counter()
    dedup.best_match(text, texts, by_sentence.boilerplate)
    dedup.index_add(session, article_id, fingerprint, 0)
    session.flush()
    indexed = time.perf_counter()
    session.commit()
    work = (paused - started) + (indexed - resumed)
    return work * 1000, (time.perf_counter() - indexed) * 1000


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def _true_pairs(sets: list[np.ndarray]) -> set[tuple[int, int]]:
    """All pairs that the exact verdict (:func:`monitor.similarity.compare`) calls copies, via
    postings: pairs sharing no shingle share nothing. Jaccard and containment come from the
    shared count; the block (and the sentence alignment, which the synthetic copies, verbatim,
    never need) is computed only where the block could reach its threshold."""
    postings: dict[int, list[int]] = defaultdict(list)
    pairs = set()
    for doc, shingle_set in enumerate(sets):
        shared: Counter[int] = Counter()
        for s in shingle_set.tolist():
            shared.update(postings[s])
            postings[s].append(doc)
        for other, n in shared.items():
            smaller = min(len(sets[other]), len(shingle_set))
            if (n / (len(sets[other]) + len(shingle_set) - n) >= similarity.DUPLICATE_THRESHOLD
                    or (n / smaller >= similarity.CONTAINMENT_THRESHOLD
                        and n >= similarity.MIN_CONTAINED_SHINGLES)
                    or (n > similarity.BLOCK_THRESHOLD - similarity.SHINGLE_SIZE
                        and similarity.is_duplicate(document(other), document(doc)))):
                pairs.add((other, doc))
    return pairs


def _recall(session, sets: list[np.ndarray]) -> tuple[float, int]:
    """Share of the true pairs that the index (buckets and pre-filter, sentences) hands to
    verification."""
    truth = _true_pairs(sets)
    found = 0
    for a, b in truth:
        fingerprint = similarity.Fingerprint.of(document(b))  # article id = document number
        candidates = set(dedup.near_candidates(session, fingerprint))
        candidates |= dedup.sentence_matches(session, fingerprint, 0).article_ids
        found += a in candidates
    return (found / len(truth) if truth else 1.0), len(truth)


def _brute_force_query_ms(sets: list[np.ndarray], queries: int = 20) -> float:
    timings = []
    for q in range(queries):
        started = time.perf_counter()
        [similarity.jaccard(sets[q], other) for other in sets]
        timings.append((time.perf_counter() - started) * 1000)
    return _percentile(timings, 50)


def _simhash(shingle_set: np.ndarray) -> int:
    """64-bit SimHash: each bit the majority of that bit over the shingles' 64-bit hashes."""
    bits = (shingle_set.reshape(-1, 1) >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    majority = bits.sum(axis=0) * 2 > len(shingle_set)
    return int(sum(1 << k for k in range(64) if majority[k]))


def _separation_rows() -> list[dict]:
    """Margin between the lowest-scored copy and the highest-scored non-copy, both methods."""
    pairs = [json.loads(line) for line in PAIRS_FILE.read_text("utf-8").splitlines() if line]
    scores: dict[str, dict[bool, list[float]]] = {"minhash": {}, "simhash": {}}
    for pair in pairs:
        a, b = similarity.shingles(pair["a_text"]), similarity.shingles(pair["b_text"])
        similar_bits = 1 - bin(_simhash(a) ^ _simhash(b)).count("1") / 64
        scores["minhash"].setdefault(pair["duplicate"], []).append(similarity.jaccard(a, b))
        scores["simhash"].setdefault(pair["duplicate"], []).append(similar_bits)
    return [
        {
            "metric": f"pairs: {name} lowest copy - highest non-copy",
            "value": round(min(s[True]) - max(s[False]), 3),
            "unit": "similarity",
        }
        for name, s in scores.items()
    ]


def _real_rows() -> list[dict]:
    """The verdict on the real pairs: copies linked, different stories merged."""
    pairs = [json.loads(line) for path in REAL_PAIRS_FILES
             for line in path.read_text("utf-8").splitlines() if line]
    verdicts = [(p["duplicate"], similarity.is_duplicate(p["a_text"], p["b_text"])) for p in pairs]
    copies = sum(truth for truth, _ in verdicts)
    return [
        {"metric": f"real pairs: copies linked of {copies}", "unit": "",
         "value": round(sum(truth and got for truth, got in verdicts) / copies, 3)},
        {"metric": f"real pairs: false merges of {len(pairs) - copies}", "unit": "pairs",
         "value": sum(got and not truth for truth, got in verdicts), "target": 0},
    ]


def run() -> list[dict]:
    """Fill the index with ``DOCS`` documents and measure; rows per bench/__init__.py."""
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
        event.listen(engine, "connect", _without_foreign_keys)
        init_db(engine)
        fill_seconds = _fill(engine, DOCS)
        timings, commits = [], []
        with session_factory(engine)() as session:
            for n in range(DOCS + 1, DOCS + 1 + TIMED):
                indexed, committed = _timed_insert(session, n, document(n))
                timings.append(indexed)
                commits.append(committed)
            subset = [similarity.shingles(document(i)) for i in range(1, min(SUBSET, DOCS) + 1)]
            recall, true_pairs = _recall(session, [np.empty(0, dtype=np.uint64)] + subset)
        db_mb = (Path(folder) / "bench.db").stat().st_size / 2**20
        engine.dispose()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [
        {"metric": "documents indexed", "value": DOCS, "unit": "docs"},
        {"metric": "bulk fill time", "value": round(fill_seconds, 1), "unit": "s"},
        {"metric": "insert+query p50", "value": round(_percentile(timings, 50), 3), "unit": "ms",
         "baseline": round(_brute_force_query_ms(subset), 3)},
        {"metric": "insert+query p99", "value": round(_percentile(timings, 99), 3), "unit": "ms",
         "target": 5},
        {"metric": "the article's commit (SQLite WAL), p50", "unit": "ms",
         "value": round(_percentile(commits, 50), 3)},
        {"metric": "the article's commit (SQLite WAL), p99", "unit": "ms",
         "value": round(_percentile(commits, 99), 3)},
        {"metric": "peak RSS (bench process)", "value": round(peak_mb), "unit": "MiB",
         "target": 2048},
        {"metric": "SQLite file", "value": round(db_mb), "unit": "MiB"},
        {"metric": f"recall vs the exact verdict (first {min(SUBSET, DOCS)} docs, "
         f"{true_pairs} pairs)", "value": round(recall, 4), "unit": "", "target": 0.99},
        *_separation_rows(),
        *_real_rows(),
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
