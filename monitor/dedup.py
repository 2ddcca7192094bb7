"""Exact and near-duplicate detection: the copies of one article are linked into one story.

The figures below are computed in monitor/similarity.py (texts only, no database); this module
keeps the story index in the database and links each new article with them.

Fingerprint: the word shingles (``SHINGLE_SIZE`` consecutive syllables) of
:func:`vntext.match_tokens`, so case, tone-mark placement, Unicode form and
whitespace do not matter, hashed to 64 bits.

The figures of a pair (:func:`monitor.similarity.compare`): *similarity*, the Jaccard similarity of
the two shingle sets; *containment*, the share of the smaller set found in the larger; *block*, the
longest run of syllables the two texts share word for word. A pair is one story when the similarity
reaches ``DUPLICATE_THRESHOLD``, or when one text is inside the other (containment >=
``CONTAINMENT_THRESHOLD``: a copy that adds or drops whole paragraphs), or when they share a block
of ``BLOCK_THRESHOLD`` syllables (a release reproduced under another outlet's own lead). *Tail*: the
shared block that ends one text while the other goes on, a copy cut after its first part (under a
lead of its own, the release's start is all it kept); a pair is one story when it reaches
``TAIL_BLOCK_THRESHOLD`` syllables. When both texts end with the same words, that is an outlet's
closing paragraph, not a cut. On the real pairs the copies it links share 40-83 syllables to the end
of one text; different stories share at most 26 there (a quoted line).

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

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from sqlalchemy import Insert, Select, Update, and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from monitor.similarity import (
    BANDS,
    Fingerprint,
    PairFigures,
    ShingledText,
    band_buckets,
    estimated_jaccard,
    figures_of,
    signature_bytes,
    signature_from_bytes,
)
from storage.models import Article, ArticleFingerprint, LshBucket, SentenceFingerprint, Story

# A candidate whose signatures agree on fewer positions than this is not read and verified: at
# 48 positions the estimate of a pair at the threshold is 0.5 ± 0.07, so 0.25 is 3.5 standard
# deviations below it, while chance candidates (band collisions) estimate near 0.
PREFILTER = 0.25
MAX_SENTENCE_ROWS = 2000
MAX_KEY_ARTICLES = 20
BOILERPLATE_ARTICLES = 3


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
    mine = ShingledText.of(text, boilerplate)
    matches = [_Match(article_id, story_id, figures_of(mine, ShingledText.of(other, boilerplate)))
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
