"""What two texts share, without any database: the word shingles of a text, the figures of a
pair (:func:`compare`: similarity, containment, block, tail, alignment) and the verdict, and the
:class:`Fingerprint` (MinHash signature and sentence keys) that the story index keeps.

The rules and how they were chosen are in monitor/dedup.py, which links the copies of an article
into one story with these figures. This module imports no database code, so that the crawl's
extraction processes fingerprint articles without loading SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache

import numpy as np

from vntext import SENTENCE_MARK, match_tokens, sentence_key

SHINGLE_SIZE = 5
DUPLICATE_THRESHOLD = 0.5
CONTAINMENT_THRESHOLD = 0.8
# Containment of a tiny text proves little: a copy must share at least this many shingles.
MIN_CONTAINED_SHINGLES = 30
BLOCK_THRESHOLD = 100
# A shared block that runs to the end of one text only: the copy was cut there (monitor/dedup.py).
TAIL_BLOCK_THRESHOLD = 40
BANDS = 24
ROWS = 2
NUM_PERM = BANDS * ROWS
# Sentences shorter than this are not indexed ("Theo TTXVN", captions); an article contributes
# at most MAX_SENTENCE_KEYS of its sentences (a lookup reads at most dedup.MAX_SENTENCE_ROWS rows).
MIN_SENTENCE_TOKENS = 12
MAX_SENTENCE_KEYS = 60  # two keys a sentence: 30 sentences
SENTENCE_WINDOW = 8
# Alignment (see monitor/dedup.py), chosen on the real and constructed development pairs.
ALIGN_MIN_TOKENS = 8
SENTENCE_SIMILARITY = 0.7
MIN_ALIGNED_SENTENCES = 2
ALIGNMENT_THRESHOLD = 0.4
# Texts this close in length are a rewrite of each other, not a summary (monitor/dedup.py).
REWRITE_LENGTH_RATIO = 0.8
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
    while the other goes on (see monitor/dedup.py's docstring)."""

    similarity: float
    containment: float
    shared: int
    block: int
    alignment: float = 0.0
    tail: int = 0

    @property
    def duplicate(self) -> bool:
        """True when the two texts are copies of one story (the rules in monitor/dedup.py)."""
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

    def otherfigures_of(self, other: _SentenceProfile, rewrite: bool) -> bool:
        """True when this sentence has a number ``other`` lacks: the same words with other
        figures (a template filled in again). In a ``rewrite`` only when ``other`` also has a
        number this one lacks: a rewrite may add a figure (a headline joined to its lead)."""
        extra = self.numbers - other.numbers
        return bool(extra and (other.numbers - self.numbers or not rewrite))


@dataclass(frozen=True)
class ShingledText:
    sequence: np.ndarray
    unique: np.ndarray
    sentences: tuple[_SentenceProfile, ...]

    @classmethod
    def of(cls, text: str, boilerplate: frozenset[int] = frozenset()) -> ShingledText:
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
    (anywhere in it: :func:`figures_of` takes the longer of the two directions), and in the run
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


def _tail(a: ShingledText, b: ShingledText, a_last: int, b_last: int) -> int:
    """The shared block that ends one text, the other going on (a copy cut there); 0 when the
    two texts end with the same words (an outlet's closing paragraph)."""
    return 0 if a.sequence[-1] == b.sequence[-1] else max(a_last, b_last)


def _alignment(a: tuple[_SentenceProfile, ...], b: tuple[_SentenceProfile, ...]) -> float:
    """Share of the shorter text's syllables in sentences that align with a sentence of the
    other (see monitor/dedup.py's docstring); 0 when fewer than ``MIN_ALIGNED_SENTENCES`` align, or
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
        return None if sentence.otherfigures_of(match, rewrite) else sentence.length
    if not rewrite or best < inside_from:
        return 0.0
    inside = [other.bigrams for other, common in zip(others, shared, strict=True)
              if common >= other.enough and not sentence.otherfigures_of(other, rewrite)]
    if not inside:
        return 0.0
    covered = sentence.bigrams & frozenset().union(*inside)
    return sentence.length * len(covered) / len(sentence.bigrams)


def figures_of(a: ShingledText, b: ShingledText) -> PairFigures:
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
    return figures_of(ShingledText.of(a_text), ShingledText.of(b_text))


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
