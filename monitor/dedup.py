"""Exact and near-duplicate detection: the copies of one article are linked into one story.

Fingerprint: the set of word shingles (``SHINGLE_SIZE`` consecutive syllables) of
:func:`crawler.vietnamese.match_tokens`, so case, tone-mark placement, Unicode form and
whitespace do not matter. Two texts are duplicates when the exact Jaccard similarity of their
shingle sets reaches ``DUPLICATE_THRESHOLD``.

Index: MinHash signatures (datasketch) cut into ``BANDS`` bands of ``ROWS`` values; each band
hashes to one 64-bit bucket. The buckets live in the database (``lsh_buckets``), so the index
survives a restart with no rebuild; a new article's candidates are the articles sharing a bucket,
and each candidate is verified by the exact Jaccard of the two texts.

Why MinHash-LSH and not SimHash, measured (``python -m bench dedup``) on the 60 constructed
pairs of tests/data/dedup_pairs.jsonl with 5-syllable shingles: exact Jaccard puts the lowest
copy at 0.64 and the highest same-event article at 0.16 (margin 0.48; 3-shingles: 0.68 vs
0.30); a 64-bit SimHash of the same shingles leaves a margin of 0.09 (six bits), too thin for
real pages, and its Hamming-radius search needs many permuted tables. MinHash banding
(24 bands x 2 rows) gives a candidate probability of 0.985 at the 0.4 threshold and 0.999 at 0.5;
candidates are then verified exactly. The threshold 0.4 sits between the two measured groups.

Concurrency: two processes that insert copies of one story at the same moment each see no
committed candidate and may create two stories; nothing is corrupted, and a later merge of
stories sharing a duplicate pair can join them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import numpy as np
from datasketch import MinHash
from sqlalchemy import Select, and_, bindparam, delete, insert, or_, select
from sqlalchemy.orm import Session

from crawler.vietnamese import match_tokens
from storage.models import Article, ArticleFingerprint, LshBucket, Story

SHINGLE_SIZE = 5
DUPLICATE_THRESHOLD = 0.4
BANDS = 24
ROWS = 2
NUM_PERM = BANDS * ROWS
_SEED = 1
_SCHEME = "affine32"  # datasketch 2 default: 32-bit values, stored as uint32
_SIGNATURE_DTYPE = np.dtype("<u4")
_INT64_MASK = (1 << 64) - 1


def shingles(text: str) -> frozenset[str]:
    """Return the set of ``SHINGLE_SIZE``-syllable shingles of ``text`` (one if it is shorter)."""
    tokens = match_tokens(text)
    if len(tokens) <= SHINGLE_SIZE:
        return frozenset([" ".join(tokens)]) if tokens else frozenset()
    return frozenset(
        " ".join(tokens[i : i + SHINGLE_SIZE]) for i in range(len(tokens) - SHINGLE_SIZE + 1)
    )


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Exact Jaccard similarity of two shingle sets (0 when both are empty)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def similarity(a_text: str, b_text: str) -> float:
    """Jaccard similarity of the shingle sets of two texts, in [0, 1]."""
    return jaccard(shingles(a_text), shingles(b_text))


def is_duplicate(a_text: str, b_text: str) -> bool:
    """True when the two texts are copies of one article (similarity >= DUPLICATE_THRESHOLD)."""
    return similarity(a_text, b_text) >= DUPLICATE_THRESHOLD


# --- MinHash signatures and LSH buckets -----------------------------------------------------


@cache
def _permutations() -> np.ndarray:
    return MinHash(num_perm=NUM_PERM, seed=_SEED, scheme=_SCHEME).permutations


def signature(shingle_set: Iterable[str]) -> np.ndarray:
    """MinHash signature (``NUM_PERM`` unsigned 32-bit values) of a shingle set."""
    minhash = MinHash(
        num_perm=NUM_PERM, seed=_SEED, permutations=_permutations(), scheme=_SCHEME
    )
    minhash.update_batch([s.encode("utf-8") for s in shingle_set])
    return minhash.hashvalues.astype(_SIGNATURE_DTYPE)


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
    # An OR of (band, bucket) equalities, built once with one parameter per band (SQLAlchemy
    # then caches its compiled form): SQLite cannot use the index for a row-value IN list.
    matches = [
        and_(LshBucket.band == band, LshBucket.bucket_hash == bindparam(f"h{band}"))
        for band in range(BANDS)
    ]
    return select(LshBucket.article_id).where(or_(*matches)).distinct().order_by(
        LshBucket.article_id
    )


def index_candidates(session: Session, buckets: Sequence[tuple[int, int]]) -> list[int]:
    """Ids of indexed articles sharing at least one bucket (as from :func:`band_buckets`)."""
    params = {f"h{band}": bucket for band, bucket in buckets}
    return list(session.scalars(_candidates_query(), params))


def index_add(session: Session, article_id: int, sig: np.ndarray) -> None:
    """Store an article's fingerprint and bucket rows (replacing earlier ones)."""
    session.execute(delete(LshBucket).where(LshBucket.article_id == article_id))
    session.execute(delete(ArticleFingerprint).where(ArticleFingerprint.article_id == article_id))
    session.execute(
        insert(ArticleFingerprint),
        [{"article_id": article_id, "signature": signature_bytes(sig)}],
    )
    session.execute(
        insert(LshBucket),
        [{"band": b, "bucket_hash": h, "article_id": article_id} for b, h in band_buckets(sig)],
    )


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


def _near_match(
    session: Session, article: Article, shingle_set: frozenset[str], sig: np.ndarray
) -> _Match | None:
    candidate_ids = [i for i in index_candidates(session, band_buckets(sig)) if i != article.id]
    if not candidate_ids:
        return None
    rows = session.execute(
        select(Article.id, Article.story_id, Article.text)
        .where(Article.id.in_(candidate_ids), Article.story_id.is_not(None))
        .order_by(Article.id)
    )
    matches = [_Match(r.id, r.story_id, jaccard(shingle_set, shingles(r.text))) for r in rows]
    matches = [m for m in matches if m.score >= DUPLICATE_THRESHOLD]
    # Best score wins; ties go to the oldest article, so the choice is deterministic.
    return min(matches, key=lambda m: (-m.score, m.article_id), default=None)


def _refresh_representative(session: Session, story: Story, article: Article) -> None:
    current = session.get(Article, story.representative_id) if story.representative_id else None
    if current is None or _sort_key(article) < _sort_key(current):
        story.representative_id = article.id


def assign_story(session: Session, article: Article) -> Story:
    """Link a freshly inserted (flushed) article to its story, creating one if it is new.

    Exact copies (same ``content_hash``) are found first, then near-copies through the LSH
    index, verified by exact shingle Jaccard. The article's fingerprint is indexed, and the
    story's representative stays the earliest published copy. Runs in the caller's transaction.
    """
    shingle_set = shingles(article.text)
    sig = signature(shingle_set)
    match = _exact_match(session, article) or _near_match(session, article, shingle_set, sig)
    if match is None:
        story = Story(created_at=datetime.now(UTC).replace(tzinfo=None))
        session.add(story)
        session.flush()
    else:
        story = session.get(Story, match.story_id)
    article.story_id = story.id
    _refresh_representative(session, story, article)
    index_add(session, article.id, sig)
    session.flush()
    return story
