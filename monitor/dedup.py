"""Exact and near-duplicate detection: the copies of one article are linked into one story.

Fingerprint: the set of word shingles (``SHINGLE_SIZE`` consecutive syllables) of
:func:`crawler.vietnamese.match_tokens`, so case, tone-mark placement, Unicode form and
whitespace do not matter, hashed to 64 bits. Two texts are duplicates when the exact Jaccard
similarity of their shingle sets reaches ``DUPLICATE_THRESHOLD``.

Index: MinHash signatures (48 universal hash functions, computed with NumPy for all shingles at
once) cut into ``BANDS`` bands of ``ROWS`` values; each band hashes to one 64-bit bucket. The
buckets live in the database (``lsh_buckets``), so the index survives a restart with no rebuild;
a new article's candidates are the articles sharing a bucket, pre-filtered by the agreement of
the stored signatures, and verified by the exact Jaccard of the two texts.

Why MinHash-LSH and not SimHash, measured (``python -m bench dedup``) on the 60 constructed
pairs of tests/data/dedup_pairs.jsonl with 5-syllable shingles: exact Jaccard puts the lowest
copy at 0.64 and the highest same-event article at 0.16 (margin 0.48; 3-shingles: 0.68 vs
0.30); a 64-bit SimHash of the same shingles leaves a margin of 0.09 (six bits), too thin for
real pages, and its Hamming-radius search needs many permuted tables. MinHash banding
(24 bands x 2 rows) gives a candidate probability of 0.999 at the 0.5 threshold; candidates are
then verified exactly.

The threshold: on the 80 pairs of tests/data/dedup_holdout.jsonl (written without sight of this
code) the lowest copy (an abridged one) scores 0.65 and the highest non-copy 0.40 (a brief
summarising the full article in its own sentences; province press releases from one template
reach 0.32). 0.5 sits between the two groups on both sets.

Concurrency: two processes that insert copies of one story at the same moment each see no
committed candidate and may create two stories; nothing is corrupted, and a later merge of
stories sharing a duplicate pair can join them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import numpy as np
from sqlalchemy import Select, and_, bindparam, insert, or_, select
from sqlalchemy.orm import Session

from crawler.vietnamese import match_tokens
from storage.models import Article, ArticleFingerprint, LshBucket, Story

SHINGLE_SIZE = 5
DUPLICATE_THRESHOLD = 0.5
# A candidate whose signatures agree on fewer positions than this is not read and verified: at
# 48 positions the estimate of a pair at the threshold is 0.5 ± 0.07, so 0.25 is 3.5 standard
# deviations below it, while chance candidates (band collisions) estimate near 0.
PREFILTER = 0.25
BANDS = 24
ROWS = 2
NUM_PERM = BANDS * ROWS
_SEED = 1
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_SIGNATURE_DTYPE = np.dtype("<u4")
_SHINGLE_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime


@dataclass(frozen=True)
class Fingerprint:
    """An article's shingles (sorted unique 64-bit hashes) and their MinHash signature."""

    shingles: np.ndarray
    signature: np.ndarray

    @classmethod
    def of(cls, text: str) -> Fingerprint:
        """The fingerprint of ``text``."""
        shingle_hashes = shingles(text)
        return cls(shingle_hashes, signature(shingle_hashes))


# Each distinct token's stable 64-bit hash, cached (a few thousand syllables cover most text).
_TOKEN_HASHES: dict[str, int] = {}
_TOKEN_CACHE_LIMIT = 200_000


def _token_hash(token: str) -> int:
    if len(_TOKEN_HASHES) >= _TOKEN_CACHE_LIMIT:
        _TOKEN_HASHES.clear()
    value = _TOKEN_HASHES[token] = int.from_bytes(
        hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
    return value


def shingles(text: str) -> np.ndarray:
    """The ``SHINGLE_SIZE``-syllable shingles of ``text``, as sorted unique 64-bit hashes (one
    shingle if the text is shorter; none if it has no word).

    Tokens are :func:`crawler.vietnamese.match_tokens`, so case, tone-mark placement, Unicode
    form and punctuation do not matter. A shingle's hash is a polynomial of its tokens' hashes
    (computed for all shingles at once), stable across processes and machines.
    """
    tokens = match_tokens(text)
    if not tokens:
        return np.empty(0, dtype=np.uint64)
    cached = _TOKEN_HASHES.get
    hashes = np.fromiter((cached(t) or _token_hash(t) for t in tokens), dtype=np.uint64,
                         count=len(tokens))
    width = min(SHINGLE_SIZE, len(hashes))
    combined = hashes[: len(hashes) - width + 1].copy()
    for offset in range(1, width):  # wraps modulo 2**64, as intended
        combined *= _SHINGLE_MULTIPLIER
        combined ^= hashes[offset : len(hashes) - width + 1 + offset]
    return np.unique(combined)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two shingle hash sets (0 when both are empty)."""
    common = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - common
    return common / union if union else 0.0


def similarity(a_text: str, b_text: str) -> float:
    """Jaccard similarity of the shingle sets of two texts, in [0, 1]."""
    return jaccard(shingles(a_text), shingles(b_text))


def is_duplicate(a_text: str, b_text: str) -> bool:
    """True when the two texts are copies of one article (similarity >= DUPLICATE_THRESHOLD)."""
    return similarity(a_text, b_text) >= DUPLICATE_THRESHOLD


# --- MinHash signatures and LSH buckets -----------------------------------------------------


@cache
def _permutations() -> tuple[np.ndarray, np.ndarray]:
    """The ``NUM_PERM`` hash functions ``h -> (a*h + b) mod p`` (universal hashing over the
    Mersenne prime p = 2**61 - 1), fixed by the seed: they must never change, the signatures are
    stored. ``a, b < 2**32`` and ``h < 2**32``, so nothing overflows 64 bits."""
    generator = np.random.RandomState(_SEED)
    a = generator.randint(1, 1 << 32, size=NUM_PERM, dtype=np.uint64)
    b = generator.randint(0, 1 << 32, size=NUM_PERM, dtype=np.uint64)
    return a.reshape(1, -1), b.reshape(1, -1)


def signature(shingle_hashes: np.ndarray) -> np.ndarray:
    """MinHash signature (``NUM_PERM`` unsigned 32-bit values) of a shingle hash set, for all
    shingles at once (one NumPy expression)."""
    if not shingle_hashes.size:
        return np.full(NUM_PERM, _MAX_HASH, dtype=_SIGNATURE_DTYPE)
    a, b = _permutations()
    values = (shingle_hashes.reshape(-1, 1) & _MAX_HASH) * a + b
    return ((values % _MERSENNE_PRIME) & _MAX_HASH).min(axis=0).astype(_SIGNATURE_DTYPE)


def signature_bytes(sig: np.ndarray) -> bytes:
    """Serialise a signature for ``article_fingerprints.signature``."""
    return sig.astype(_SIGNATURE_DTYPE).tobytes()


def signature_from_bytes(data: bytes) -> np.ndarray:
    """Inverse of :func:`signature_bytes`."""
    return np.frombuffer(data, dtype=_SIGNATURE_DTYPE)


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity estimated from two signatures."""
    return float(np.count_nonzero(a == b)) / len(a)


def band_buckets(sig: np.ndarray) -> list[tuple[int, int]]:
    """The ``(band, bucket_hash)`` pairs of a signature; bucket_hash is a signed 64-bit int."""
    rows = sig.astype(_SIGNATURE_DTYPE).reshape(BANDS, ROWS)
    buckets = []
    for band, values in enumerate(rows):
        digest = hashlib.blake2b(values.tobytes(), digest_size=8).digest()
        buckets.append((band, int.from_bytes(digest, "little", signed=True)))
    return buckets


# --- the persistent index -------------------------------------------------------------------


@cache
def _candidates_query() -> Select:
    """The fingerprints of the articles sharing a bucket with the given ones, in one query.

    An OR of (band, bucket) equalities, built once with one parameter per band (SQLAlchemy then
    caches its compiled form): SQLite cannot use the index for a row-value IN list.
    """
    matches = [
        and_(LshBucket.band == band, LshBucket.bucket_hash == bindparam(f"h{band}"))
        for band in range(BANDS)
    ]
    sharing = select(LshBucket.article_id).where(or_(*matches))
    return (select(ArticleFingerprint.article_id, ArticleFingerprint.signature)
            .where(ArticleFingerprint.article_id.in_(sharing))
            .order_by(ArticleFingerprint.article_id))


def near_candidates(session: Session, fingerprint: Fingerprint,
                    exclude: int | None = None) -> list[int]:
    """Ids of indexed articles that may be near-copies: they share an LSH bucket and their
    stored signature agrees with this one on at least ``PREFILTER`` of its positions."""
    params = {f"h{band}": bucket for band, bucket in band_buckets(fingerprint.signature)}
    return [article_id for article_id, stored in session.execute(_candidates_query(), params)
            if article_id != exclude
            and estimated_jaccard(fingerprint.signature, signature_from_bytes(stored)) >= PREFILTER]


def index_add(session: Session, article_id: int, sig: np.ndarray) -> None:
    """Store a new article's fingerprint and bucket rows (Core inserts on the session's
    connection: the ORM's bulk-insert bookkeeping would cost more than the rows)."""
    connection = session.connection()
    connection.execute(insert(ArticleFingerprint.__table__),
                       [{"article_id": article_id, "signature": signature_bytes(sig)}])
    connection.execute(insert(LshBucket.__table__),
                       [{"band": b, "bucket_hash": h, "article_id": article_id}
                        for b, h in band_buckets(sig)])


# --- stories --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Match:
    article_id: int
    story_id: int
    score: float


def _sort_key(article: Article) -> tuple[bool, datetime, int]:
    """Earliest published first; undated copies after dated ones; ties by id."""
    return (article.published_at is None, article.published_at or datetime.min, article.id)


def _exact_match(session: Session, article: Article) -> _Match | None:
    query = (
        select(Article.id, Article.story_id)
        .where(
            Article.content_hash == article.content_hash,
            Article.id != article.id,
            Article.story_id.is_not(None),
        )
        .order_by(Article.id)
        .limit(1)
    )
    row = session.execute(query).first()
    return _Match(row.id, row.story_id, 1.0) if row else None


def best_match(fingerprint: Fingerprint,
               candidates: Iterable[tuple[int, int, str]]) -> _Match | None:
    """The candidate ``(article_id, story_id, text)`` most similar to ``fingerprint`` by exact
    Jaccard, if it reaches the threshold; ties go to the oldest article (deterministic)."""
    matches = [_Match(article_id, story_id, jaccard(fingerprint.shingles, shingles(text)))
               for article_id, story_id, text in candidates]
    matches = [m for m in matches if m.score >= DUPLICATE_THRESHOLD]
    return min(matches, key=lambda m: (-m.score, m.article_id), default=None)


def _near_match(session: Session, article: Article, fingerprint: Fingerprint) -> _Match | None:
    ids = near_candidates(session, fingerprint, exclude=article.id)
    if not ids:
        return None
    rows = session.execute(
        select(Article.id, Article.story_id, Article.text)
        .where(Article.id.in_(ids), Article.story_id.is_not(None))
    )
    return best_match(fingerprint, rows)


def _refresh_representative(session: Session, story: Story, article: Article) -> None:
    current = session.get(Article, story.representative_id) if story.representative_id else None
    if current is None or _sort_key(article) < _sort_key(current):
        story.representative_id = article.id


def assign_story(session: Session, article: Article) -> int:
    """Link a freshly inserted (flushed) article to its story, creating one if it is new;
    returns the story's id.

    Exact copies (same ``content_hash``) are found first, then near-copies through the LSH
    index, pre-filtered by their signatures and verified by exact shingle Jaccard. The article's
    fingerprint is indexed, and the story's representative stays the earliest published copy.
    Runs in the caller's transaction.
    """
    fingerprint = Fingerprint.of(article.text)
    match = _exact_match(session, article) or _near_match(session, article, fingerprint)
    if match is None:
        story_id = _new_story(session, article.id)
    else:
        story = session.get_one(Story, match.story_id)
        _refresh_representative(session, story, article)
        story_id = story.id
    article.story_id = story_id
    index_add(session, article.id, fingerprint.signature)
    session.flush()
    return story_id


def _new_story(session: Session, representative_id: int) -> int:
    """Insert a story of one article; its id (a Core insert: no ORM flush for one row)."""
    statement = (insert(Story).values(created_at=datetime.now(UTC).replace(tzinfo=None),
                                      representative_id=representative_id)
                 .returning(Story.id))
    return session.connection().execute(statement).scalar_one()
