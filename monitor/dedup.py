"""Exact and near-duplicate detection: the copies of one article are linked into one story.

Fingerprint: the word shingles (``SHINGLE_SIZE`` consecutive syllables) of
:func:`vntext.match_tokens`, so case, tone-mark placement, Unicode form and
whitespace do not matter, hashed to 64 bits.

The figures of a pair (:func:`compare`): *similarity*, the Jaccard similarity of the two shingle
sets; *containment*, the share of the smaller set found in the larger; *block*, the longest run of
syllables the two texts share word for word. A pair is one story when the similarity reaches
``DUPLICATE_THRESHOLD``, or when one text is inside the other (containment >=
``CONTAINMENT_THRESHOLD``: a copy that adds or drops whole paragraphs), or when they share a block
of ``BLOCK_THRESHOLD`` syllables (a release reproduced under another outlet's own lead). *Tail*:
the shared block that ends one text while the other goes on, a copy cut after its first part
(under a lead of its own, the release's start is all it kept); a pair is one story when it
reaches ``TAIL_BLOCK_THRESHOLD`` syllables. When both texts end with the same words, that is an
outlet's closing paragraph, not a cut. On the real pairs the copies it links share 40-83
syllables to the end of one text; different stories share at most 26 there (a quoted line).

A copy reworded lightly (an aggregator's rewrite, a release retold sentence by sentence) shares
few 5-syllable shingles with its original, no more than two independent reports of one event.
What tells them apart is *alignment*: each sentence of the shorter text (``ALIGN_MIN_TOKENS``
syllables or more) is looked up among the sentences of the other text, its word bigrams with
tone and vowel marks folded away; it aligns when ``SENTENCE_SIMILARITY`` of its bigrams are
found in one sentence of the other (a sentence split or joined by the copy is still found). The
figure is the share of the shorter text's syllables in sentences that align, counted when at
least ``MIN_ALIGNED_SENTENCES`` align, and 0 when an aligned sentence carries a number its
match lacks: a sentence repeated with other figures is an outlet's template (a yearly item, one
release for two provinces), not a copy. A rewrite keeps most of its original's sentences with
their words and figures; independent reports share names, figures and quotes but say them in
sentences of their own. A pair is also one story when the alignment reaches
``ALIGNMENT_THRESHOLD``.

A *rewrite* (the shorter text at least ``REWRITE_LENGTH_RATIO`` of the longer's syllables) also
joins sentences, adds a clause or puts its headline before its lead: a sentence of the shorter
text that holds whole sentences of the other (``SENTENCE_SIMILARITY`` of their bigrams found in
it) counts with the share of its bigrams they cover, and a sentence is a template only when both
sides have a number the other lacks (a figure added is not a figure changed). A much shorter
text built that way is a summary, a brief, and counts only its sentences found whole. Letters
that copying sites swap for look-alikes (``ᵭ``, macron and inverted breve for the circumflex)
are folded with the marks.

Measured on the 170 real development pairs of tests/data/dedup_real_*.jsonl (public pages found
by searching for their sentences, page starts of 1,000-2,000 characters; 47 copies): 38 copies
linked, none of the 123 different stories merged; different stories align at most 0.33, and the
9 copies missed align at most 0.35 (within the excerpts they share one to three sentences; the
held-out part 4 is scored in tests/test_dedup.py). On the constructed sets, where one
outlet rewrites another's report sentence by sentence (labelled different stories), a brief
summarising an article aligns 0.38, the rewrites at most 0.25 and two parts of a series with
one introduction at most 0.30; two provinces' releases from one template reach containment
0.50 with blocks up to 74, the series a block of 91. The rewrite credit lifts the constructed
rewrites (texts 0.75-0.79 of each other's length) to 0.43 when the ratio is ignored, the briefs
(0.57-0.70) to 0.78; the real rewrites it links are 0.93-1.00 of each other's length, so
``REWRITE_LENGTH_RATIO`` (0.8) lies between, and the margin there is thin.

Boilerplate: a sentence that recurs in ``BOILERPLATE_ARTICLES`` other articles of the same source
(a fixed opening, a standard closing paragraph) is not evidence; it is removed from both texts
before a new article is compared with its candidates.

Index: MinHash signatures (48 universal hash functions, computed with NumPy for all shingles at
once) cut into ``BANDS`` bands of ``ROWS`` values; each band hashes to one 64-bit bucket. The
buckets live in the database (``lsh_buckets``), so the index survives a restart with no rebuild.
A copy that is much shorter or longer than its original has a low Jaccard similarity, so the
articles' long sentences are indexed too (``sentence_fingerprints``): articles sharing a sentence
that is not boilerplate are candidates as well. A reworded copy changes a word here and there, so
each long sentence is also indexed by its first ``SENTENCE_WINDOW`` syllables, marks folded: a
rewrite keeps the opening words of some of its sentences (on the real pairs, each of the four
copies the buckets miss shares one to three such openings with its original). A key that more than
``MAX_KEY_ARTICLES`` articles carry is a stock phrase and proposes no candidate.
Candidates are verified exactly on the two texts.

Why MinHash-LSH and not SimHash, measured (``python -m bench dedup``) on the 60 constructed
pairs of tests/data/dedup_pairs.jsonl with 5-syllable shingles: exact Jaccard puts the lowest
copy at 0.64 and the highest same-event article at 0.16 (margin 0.48); a 64-bit SimHash of the
same shingles leaves a margin of 0.09 (six bits), too thin for real pages, and its
Hamming-radius search needs many permuted tables. MinHash banding (24 bands x 2 rows) gives a
candidate probability of 0.999 at the 0.5 threshold.

Concurrency: two processes that insert copies of one story at the same moment each see no
committed candidate and may create two stories; nothing is corrupted, and a later merge of
stories sharing a duplicate pair can join them.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import numpy as np
from sqlalchemy import Insert, Select, Update, and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from storage.models import Article, ArticleFingerprint, LshBucket, SentenceFingerprint, Story
from vntext import SENTENCE_MARK, match_tokens, sentence_key

SHINGLE_SIZE = 5
DUPLICATE_THRESHOLD = 0.5
CONTAINMENT_THRESHOLD = 0.8
# Containment of a tiny text proves little: a copy must share at least this many shingles.
MIN_CONTAINED_SHINGLES = 30
BLOCK_THRESHOLD = 100
# A shared block that runs to the end of one text only: the copy was cut there (module docstring).
TAIL_BLOCK_THRESHOLD = 40
# A candidate whose signatures agree on fewer positions than this is not read and verified: at
# 48 positions the estimate of a pair at the threshold is 0.5 ± 0.07, so 0.25 is 3.5 standard
# deviations below it, while chance candidates (band collisions) estimate near 0.
PREFILTER = 0.25
BANDS = 24
ROWS = 2
NUM_PERM = BANDS * ROWS
# Sentences shorter than this are not indexed ("Theo TTXVN", captions); an article contributes
# at most MAX_SENTENCE_KEYS of its sentences, and a lookup reads at most MAX_SENTENCE_ROWS rows.
MIN_SENTENCE_TOKENS = 12
MAX_SENTENCE_KEYS = 60  # two keys a sentence: 30 sentences
MAX_SENTENCE_ROWS = 2000
SENTENCE_WINDOW = 8
MAX_KEY_ARTICLES = 20
# Alignment (see the module's docstring), chosen on the real and constructed development pairs.
ALIGN_MIN_TOKENS = 8
SENTENCE_SIMILARITY = 0.7
MIN_ALIGNED_SENTENCES = 2
ALIGNMENT_THRESHOLD = 0.4
# Texts this close in length are a rewrite of each other, not a summary (module docstring).
REWRITE_LENGTH_RATIO = 0.8
BOILERPLATE_ARTICLES = 3
_SEED = 1
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_SIGNATURE_DTYPE = np.dtype("<u4")
_SHINGLE_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime


@dataclass(frozen=True)
class Fingerprint:
    """What the index keeps of an article: the MinHash signature of its shingles and the keys
    of its long sentences (small: it travels from the extraction process to the writer)."""

    signature: np.ndarray
    sentence_hashes: tuple[int, ...] = ()

    @classmethod
    def of(cls, text: str) -> Fingerprint:
        """The fingerprint of ``text`` (its text tokenised once)."""
        sentences = token_sentences(text)
        shingle_hashes = np.unique(_sequence([token for tokens in sentences for token in tokens]))
        keys = tuple(dict.fromkeys(key for tokens in sentences
                                   if len(tokens) >= MIN_SENTENCE_TOKENS
                                   for key in sentence_keys(tokens)))
        return cls(signature(shingle_hashes), keys[:MAX_SENTENCE_KEYS])


# Each distinct token's stable 64-bit hash, cached (a few thousand syllables cover most text).
_TOKEN_HASHES: dict[str, int] = {}
_TOKEN_CACHE_LIMIT = 200_000


def _token_hash(token: str) -> int:
    if len(_TOKEN_HASHES) >= _TOKEN_CACHE_LIMIT:
        _TOKEN_HASHES.clear()
    value = _TOKEN_HASHES[token] = int.from_bytes(
        hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
    return value


def shingle_sequence(text: str) -> np.ndarray:
    """The 64-bit hashes of the ``SHINGLE_SIZE``-syllable shingles of ``text``, in text order
    (one shingle if the text is shorter; none if it has no word).

    Tokens are :func:`vntext.match_tokens`, so case, tone-mark placement, Unicode
    form and punctuation do not matter. A shingle's hash is a polynomial of its tokens' hashes
    (computed for all shingles at once), stable across processes and machines.
    """
    return _sequence(match_tokens(text))


def _sequence(tokens: list[str]) -> np.ndarray:
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
    return combined


def shingles(text: str) -> np.ndarray:
    """The shingles of ``text`` as sorted unique 64-bit hashes (see :func:`shingle_sequence`)."""
    return np.unique(shingle_sequence(text))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two shingle hash sets (0 when both are empty)."""
    common = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - common
    return common / union if union else 0.0


def similarity(a_text: str, b_text: str) -> float:
    """Jaccard similarity of the shingle sets of two texts, in [0, 1]."""
    return jaccard(shingles(a_text), shingles(b_text))


# --- the figures of a pair ------------------------------------------------------------------


@dataclass(frozen=True)
class PairFigures:
    """What two texts share: Jaccard ``similarity`` and ``containment`` of their shingle sets,
    the number of ``shared`` shingles, the longest ``block`` of syllables shared verbatim, the
    ``alignment`` of their sentences and the ``tail``, the shared block that ends one text
    while the other goes on (see the module's docstring)."""

    similarity: float
    containment: float
    shared: int
    block: int
    alignment: float = 0.0
    tail: int = 0

    @property
    def duplicate(self) -> bool:
        """True when the two texts are copies of one story (see the module's rules)."""
        return (self.similarity >= DUPLICATE_THRESHOLD
                or (self.containment >= CONTAINMENT_THRESHOLD
                    and self.shared >= MIN_CONTAINED_SHINGLES)
                or self.block >= BLOCK_THRESHOLD
                or self.tail >= TAIL_BLOCK_THRESHOLD
                or self.alignment >= ALIGNMENT_THRESHOLD)

    def as_dict(self) -> dict[str, float | int | bool]:
        """The figures, rounded, with the verdict (the JSON of ``dtmon dedup pairs``)."""
        return {"similarity": round(self.similarity, 4), "containment": round(self.containment, 4),
                "block": self.block, "tail": self.tail, "alignment": round(self.alignment, 4),
                "duplicate": self.duplicate}


@dataclass(frozen=True)
class _SentenceProfile:
    """What alignment compares of one sentence: its folded word bigrams, its numbers, its
    length in syllables and how many of its bigrams another sentence must hold to hold it
    (``SENTENCE_SIMILARITY``)."""

    bigrams: frozenset[tuple[str, str]]
    numbers: frozenset[str]
    length: int
    enough: float

    @classmethod
    def of(cls, tokens: list[str]) -> _SentenceProfile:
        folded = [fold_token(token) for token in tokens]
        bigrams = frozenset(zip(folded, folded[1:], strict=False))
        return cls(bigrams,
                   frozenset(token.lstrip("0") or "0" for token in tokens if token.isdigit()),
                   len(tokens), SENTENCE_SIMILARITY * len(bigrams))

    def other_figures(self, other: _SentenceProfile, rewrite: bool) -> bool:
        """True when this sentence has a number ``other`` lacks: the same words with other
        figures (a template filled in again). In a ``rewrite`` only when ``other`` also has a
        number this one lacks: a rewrite may add a figure (a headline joined to its lead)."""
        extra = self.numbers - other.numbers
        return bool(extra and (other.numbers - self.numbers or not rewrite))


@dataclass(frozen=True)
class _Shingled:
    sequence: np.ndarray
    unique: np.ndarray
    sentences: tuple[_SentenceProfile, ...]

    @classmethod
    def of(cls, text: str, boilerplate: frozenset[int] = frozenset()) -> _Shingled:
        """The shingles and sentence profiles of ``text`` without its sentences whose hash is in
        ``boilerplate``."""
        kept = [tokens for tokens in token_sentences(text)
                if len(tokens) < MIN_SENTENCE_TOKENS or sentence_hash(tokens) not in boilerplate]
        sequence = _sequence([token for tokens in kept for token in tokens])
        profiles = dict.fromkeys(_SentenceProfile.of(tokens) for tokens in kept
                                 if len(tokens) >= ALIGN_MIN_TOKENS)
        return cls(sequence, np.unique(sequence), tuple(profiles))


def _blocks(sequence: np.ndarray, other: np.ndarray) -> tuple[int, int]:
    """Syllables in the longest run of consecutive shingles of ``sequence`` found in ``other``
    (anywhere in it: :func:`_figures` takes the longer of the two directions), and in the run
    that ends ``sequence`` (0 when its last shingle is not in ``other``)."""
    if not sequence.size:
        return 0, 0
    found = np.isin(sequence, other, assume_unique=False).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], found, [0]))))
    if not edges.size:
        return 0, 0
    runs = edges[1::2] - edges[::2]
    last = int(runs[-1]) + SHINGLE_SIZE - 1 if edges[-1] == sequence.size else 0
    return int(runs.max()) + SHINGLE_SIZE - 1, last


def _tail(a: _Shingled, b: _Shingled, a_last: int, b_last: int) -> int:
    """The shared block that ends one text, the other going on (a copy cut there); 0 when the
    two texts end with the same words (an outlet's closing paragraph)."""
    return 0 if a.sequence[-1] == b.sequence[-1] else max(a_last, b_last)


def _alignment(a: tuple[_SentenceProfile, ...], b: tuple[_SentenceProfile, ...]) -> float:
    """Share of the shorter text's syllables in sentences that align with a sentence of the
    other (see the module's docstring); 0 when fewer than ``MIN_ALIGNED_SENTENCES`` align, or
    when a sentence is repeated with other figures (a template filled in twice)."""
    length_a, length_b = (sum(s.length for s in side) for side in (a, b))
    if length_a == length_b:  # either side is the shorter: the figure stays symmetric
        return max(_aligned_share(a, b), _aligned_share(b, a))
    return _aligned_share(a, b) if length_a < length_b else _aligned_share(b, a)


def _aligned_share(shorter: tuple[_SentenceProfile, ...],
                   longer: tuple[_SentenceProfile, ...]) -> float:
    total = sum(s.length for s in shorter)
    if not total or not longer:
        return 0.0
    # In a rewrite, a sentence sharing fewer bigrams than any sentence of the other needs
    # holds none of them whole.
    inside_from = (min(s.enough for s in longer)
                   if total >= REWRITE_LENGTH_RATIO * sum(s.length for s in longer) else None)
    aligned = 0.0
    count = 0
    for sentence in shorter:
        credit = _sentence_credit(sentence, longer, inside_from)
        if credit is None:
            return 0.0
        aligned += credit
        count += credit > 0
    return aligned / total if count >= MIN_ALIGNED_SENTENCES else 0.0


def _sentence_credit(sentence: _SentenceProfile, others: tuple[_SentenceProfile, ...],
                     inside_from: float | None) -> float | None:
    """The syllables of ``sentence`` that align with ``others``: all of them when its bigrams
    are found in one sentence of the other text (None when that sentence lacks one of its
    numbers: a template); in a rewrite (texts of about one length: ``inside_from`` is the
    fewest bigrams a sentence of ``others`` needs), when it holds whole sentences of the other
    text with the same numbers instead (sentences joined, a clause added), the share of its
    bigrams those sentences cover; else 0."""
    rewrite = inside_from is not None
    shared = [len(sentence.bigrams & other.bigrams) for other in others]  # each pair once
    best = max(shared)
    if best >= sentence.enough:
        match = others[len(shared) - 1 - shared[::-1].index(best)]
        return None if sentence.other_figures(match, rewrite) else sentence.length
    if not rewrite or best < inside_from:
        return 0.0
    inside = [other.bigrams for other, common in zip(others, shared, strict=True)
              if common >= other.enough and not sentence.other_figures(other, rewrite)]
    if not inside:
        return 0.0
    covered = sentence.bigrams & frozenset().union(*inside)
    return sentence.length * len(covered) / len(sentence.bigrams)


def _figures(a: _Shingled, b: _Shingled) -> PairFigures:
    shared = np.intersect1d(a.unique, b.unique, assume_unique=True).size
    union = a.unique.size + b.unique.size - shared
    smaller = min(a.unique.size, b.unique.size)
    (a_block, a_last), (b_block, b_last) = ((_blocks(a.sequence, b.unique),
                                             _blocks(b.sequence, a.unique))
                                            if shared else ((0, 0), (0, 0)))
    return PairFigures(similarity=shared / union if union else 0.0,
                       containment=shared / smaller if smaller else 0.0,
                       shared=shared, block=max(a_block, b_block),
                       alignment=_alignment(a.sentences, b.sentences),
                       tail=_tail(a, b, a_last, b_last) if shared else 0)


def compare(a_text: str, b_text: str) -> PairFigures:
    """The figures of two texts (symmetric)."""
    return _figures(_Shingled.of(a_text), _Shingled.of(b_text))


def is_duplicate(a_text: str, b_text: str) -> bool:
    """True when the two texts are copies of one story (see :class:`PairFigures`)."""
    return compare(a_text, b_text).duplicate


# --- sentences and boilerplate --------------------------------------------------------------


def token_sentences(text: str) -> list[list[str]]:
    """The match tokens of each sentence of ``text`` (a sentence ends at ``. ! ? …`` or at the
    end of a line, as in :func:`vntext.sentence_key`)."""
    sentences: list[list[str]] = [[]]
    for token in sentence_key(text).split():
        if token == SENTENCE_MARK:
            sentences.append([])
        else:
            sentences[-1].append(token)
    return [tokens for tokens in sentences if tokens]


def long_sentences(text: str) -> list[list[str]]:
    """The sentences of ``text`` with at least ``MIN_SENTENCE_TOKENS`` tokens, in text order."""
    return [tokens for tokens in token_sentences(text) if len(tokens) >= MIN_SENTENCE_TOKENS]


def sentence_hash(tokens: list[str]) -> int:
    """Stable signed 64-bit hash of a sentence's match tokens."""
    return _key_hash(" ".join(tokens))


def sentence_keys(tokens: list[str]) -> tuple[int, int]:
    """The index keys of a long sentence: its :func:`sentence_hash`, and the hash of its first
    ``SENTENCE_WINDOW`` tokens, folded (:func:`fold_token`)."""
    return (sentence_hash(tokens),
            _key_hash("^ " + " ".join(fold_token(token) for token in tokens[:SENTENCE_WINDOW])))


def _key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(),
                          "little", signed=True)


# Also the marks that copying sites put on look-alike letters so that copies escape matching
# (macron, inverted breve: "ṑ" for "ồ", "ȃ" for "â"; "ᵭ" for "đ"), which Vietnamese never uses.
_MARKS = re.compile(r"[0-9]|w|(?<=([adeo]))\1|[\u0304\u0311]")
_FOLDED: dict[str, str] = {}  # a few thousand syllables cover most text


def fold_token(token: str) -> str:
    """A match token without its tone and vowel marks (``"hawng2"`` and ``"hang2"`` both give
    ``"hang"``, ``"ddoong1"`` and the look-alike ``"ᵭṑng"`` give ``"dong"``); numbers are kept
    whole."""
    folded = _FOLDED.get(token)
    if folded is None:
        if len(_FOLDED) >= _TOKEN_CACHE_LIMIT:
            _FOLDED.clear()
        folded = _FOLDED[token] = (token if token.isdigit()
                                   else _MARKS.sub("", token.replace("ᵭ", "d")))
    return folded


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


@dataclass(frozen=True)
class SentenceMatches:
    """What the sentence index says of a new article: the articles sharing one of its sentence
    keys that is neither boilerplate nor a stock phrase, and the keys that are its source's
    boilerplate."""

    article_ids: frozenset[int]
    boilerplate: frozenset[int]


@cache
def _sentences_query() -> Select:
    """The rows of the given sentence hashes (one expanding parameter; a Core statement: the
    ORM's per-row bookkeeping would cost more than the lookup)."""
    table = SentenceFingerprint.__table__
    return (select(table.c.sentence_hash, table.c.article_id, table.c.source_id)
            .where(table.c.sentence_hash.in_(bindparam("hashes", expanding=True)))
            .limit(MAX_SENTENCE_ROWS))


def sentence_matches(session: Session, fingerprint: Fingerprint, source_id: int,
                     exclude: int | None = None) -> SentenceMatches:
    """Look the article's long sentences up in ``sentence_fingerprints`` (one query)."""
    if not fingerprint.sentence_hashes:
        return SentenceMatches(frozenset(), frozenset())
    # Up to MAX_SENTENCE_ROWS rows, fetched at once and read as tuples: a row at a time cost
    # the writer more than the query once stock phrases recur in thousands of articles.
    rows = [(sentence, article, source) for sentence, article, source in
            session.connection().execute(
                _sentences_query(), {"hashes": list(fingerprint.sentence_hashes)}).all()
            if article != exclude]
    same_source = Counter(sentence for sentence, _, source in rows if source == source_id)
    boilerplate = frozenset(h for h, n in same_source.items() if n >= BOILERPLATE_ARTICLES)
    carriers = Counter(sentence for sentence, _, _ in rows)
    return SentenceMatches(
        frozenset(article for sentence, article, _ in rows if sentence not in boilerplate
                  and carriers[sentence] <= MAX_KEY_ARTICLES),
        boilerplate)


def index_add(session: Session, article_id: int, fingerprint: Fingerprint,
              source_id: int) -> None:
    """Store a new article's fingerprint, bucket and sentence rows (Core inserts on the
    session's connection: the ORM's bulk-insert bookkeeping would cost more than the rows)."""
    connection = session.connection()
    fingerprints, buckets, sentences = _index_inserts()
    connection.execute(fingerprints, [{"article_id": article_id,
                                       "signature": signature_bytes(fingerprint.signature)}])
    connection.execute(buckets, [{"band": b, "bucket_hash": h, "article_id": article_id}
                                 for b, h in band_buckets(fingerprint.signature)])
    if fingerprint.sentence_hashes:
        connection.execute(sentences, [{"sentence_hash": h, "article_id": article_id,
                                        "source_id": source_id}
                                       for h in fingerprint.sentence_hashes])


@cache
def _index_inserts() -> tuple[Insert, Insert, Insert]:
    """The inserts of the index's three tables, built once."""
    return (insert(ArticleFingerprint.__table__), insert(LshBucket.__table__),
            insert(SentenceFingerprint.__table__))


# --- stories --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Match:
    article_id: int
    story_id: int
    figures: PairFigures


def _sort_key(article: Article) -> tuple[bool, datetime, int]:
    """Earliest published first; undated copies after dated ones; ties by id."""
    return (article.published_at is None, article.published_at or datetime.min, article.id)


def _exact_match(session: Session, article: Article) -> _Match | None:
    row = session.connection().execute(_exact_query(), {"hash": article.content_hash,
                                                        "id": article.id}).first()
    return _Match(row.id, row.story_id, PairFigures(1.0, 1.0, 0, 0)) if row else None


@cache
def _exact_query() -> Select:
    """The oldest other article with content hash ``hash`` that has a story (built once, as
    the writer's other statements: building and keying one per article costs more than
    running it)."""
    articles = Article.__table__
    return (select(articles.c.id, articles.c.story_id)
            .where(articles.c.content_hash == bindparam("hash"), articles.c.id != bindparam("id"),
                   articles.c.story_id.is_not(None))
            .order_by(articles.c.id).limit(1))


def best_match(text: str, candidates: Iterable[tuple[int, int, str]],
               boilerplate: frozenset[int] = frozenset()) -> _Match | None:
    """The candidate ``(article_id, story_id, text)`` that is a copy of ``text`` with the
    strongest figures (containment, then similarity; ties to the oldest article), if any.
    Sentences in ``boilerplate`` are removed from both texts first."""
    candidates = list(candidates)
    if not candidates:
        return None
    mine = _Shingled.of(text, boilerplate)
    matches = [_Match(article_id, story_id, _figures(mine, _Shingled.of(other, boilerplate)))
               for article_id, story_id, other in candidates]
    matches = [m for m in matches if m.figures.duplicate]
    return min(matches, default=None, key=lambda m: (-m.figures.containment,
                                                     -m.figures.similarity, m.article_id))


def _near_match(session: Session, article: Article, fingerprint: Fingerprint) -> _Match | None:
    by_sentence = sentence_matches(session, fingerprint, article.source_id, exclude=article.id)
    ids = set(near_candidates(session, fingerprint, exclude=article.id)) | by_sentence.article_ids
    if not ids:
        return None
    rows = session.connection().execute(_candidate_texts_query(), {"ids": sorted(ids)})
    return best_match(article.text, rows, by_sentence.boilerplate)


@cache
def _candidate_texts_query() -> Select:
    """The id, story and text of the articles ``ids`` that have a story."""
    articles = Article.__table__
    return select(articles.c.id, articles.c.story_id, articles.c.text).where(
        articles.c.id.in_(bindparam("ids", expanding=True)), articles.c.story_id.is_not(None))


def _refresh_representative(session: Session, story: Story, article: Article) -> None:
    current = session.get(Article, story.representative_id) if story.representative_id else None
    if current is None or _sort_key(article) < _sort_key(current):
        story.representative_id = article.id


def assign_story(session: Session, article: Article,
                 fingerprint: Fingerprint | None = None) -> int:
    """Link a freshly inserted (flushed) article to its story, creating one if it is new;
    returns the story's id.

    Exact copies (same ``content_hash``) are found first, then near-copies: candidates from the
    LSH buckets (pre-filtered by their signatures) and from shared long sentences, verified on
    the two texts without the source's boilerplate sentences. The article's fingerprint is
    indexed, and the story's representative stays the earliest published copy. Runs in the
    caller's transaction. ``fingerprint`` is the article text's, when computed already.
    """
    fingerprint = fingerprint or Fingerprint.of(article.text)
    match = _exact_match(session, article) or _near_match(session, article, fingerprint)
    if match is None:
        story_id = _new_story(session, article.id)
    else:
        story = session.get_one(Story, match.story_id)
        _refresh_representative(session, story, article)
        story_id = story.id
    _link_to_story(session, article, story_id)
    index_add(session, article.id, fingerprint, article.source_id)
    session.flush()
    return story_id


def _link_to_story(session: Session, article: Article, story_id: int) -> None:
    """Set the article's story: a Core update, the loaded article told it is saved (an ORM
    flush of one changed column costs several times the statement)."""
    session.connection().execute(_story_update(), {"article": article.id, "story": story_id})
    set_committed_value(article, "story_id", story_id)


def _new_story(session: Session, representative_id: int) -> int:
    """Insert a story of one article; its id (a Core insert: no ORM flush for one row)."""
    return session.connection().execute(_story_insert(), {
        "created_at": datetime.now(UTC).replace(tzinfo=None),
        "representative_id": representative_id}).scalar_one()


@cache
def _story_insert() -> Insert:
    return insert(Story.__table__).returning(Story.__table__.c.id)


@cache
def _story_update() -> Update:
    articles = Article.__table__
    return (update(articles).where(articles.c.id == bindparam("article"))
            .values(story_id=bindparam("story")))
