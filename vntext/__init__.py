"""Vietnamese text normalisation, the bottom layer of dtmon.

Every package may import it (storage keys content hashes with it, the crawler cleans extracted
text with it, monitor scores topics and shingles with it), and it imports none of them: the
layers are ``vntext`` <- ``storage`` <- ``crawler`` <- ``monitor`` (tests/test_layering.py).

Two different jobs, kept apart on purpose:

* :func:`normalize_text` cleans text for *storage and display*: Unicode NFC, the Icelandic
  eth (``ð``/``Ð``, a common typing slip) repaired to ``đ``/``Đ``, non-breaking and zero-width
  spaces turned into plain spaces. The spelling is otherwise kept as the page wrote it.
* :func:`match_key` builds a *matching key*: case folded, tone marks moved out of the syllable
  so that both placement conventions (``hoá``/``hóa``, ``uỷ``/``ủy``) give the same key, and
  the text cut into word tokens so that a term never matches inside another word.
"""

from __future__ import annotations

import re
import unicodedata

# Combining tone marks (Vietnamese has five tones besides the level one). Vowel-quality marks
# (circumflex U+0302, breve U+0306, horn U+031B) are part of the letter and are kept.
_TONE_DIGITS = {
    "\u0301": "1",  # sắc
    "\u0300": "2",  # huyền
    "\u0309": "3",  # hỏi
    "\u0303": "4",  # ngã
    "\u0323": "5",  # nặng
}
_SPACES = re.compile(r"[\u00a0\u2000-\u200b\u202f\u205f\u3000\ufeff\t\f\v ]+")
# A combining mark that NFC could not compose (a tone typed on a consonant) stays in its word.
_TOKEN = re.compile(r"[\w\u0300-\u036f]+")


def _repair_eth(text: str) -> str:
    # str.replace is two orders of magnitude faster than str.translate on long texts.
    return text.replace("ð", "đ").replace("Ð", "Đ")


def normalize_text(text: str) -> str:
    """Return ``text`` in NFC with eth repaired and odd spaces made plain, lines trimmed."""
    text = _repair_eth(unicodedata.normalize("NFC", text))
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(lines).strip()


# Keys are plain ASCII where the text is Vietnamese: vowel marks are spelled as in Telex
# (ă aw, â aa, ê ee, ô oo, ơ ow, ư uw, đ dd) and the tone becomes a digit after the syllable.
# Matching then runs on ASCII strings, which Python's str and re handle several times faster.
_VOWEL_MARKS = {"\u0306": "w", "\u031b": "w"}  # breve, horn; the circumflex doubles the vowel
_CIRCUMFLEX = "\u0302"

# Texts are keyed one whitespace-separated chunk at a time ("Số,", "(VNeID)", "hoá"), and the
# key of each raw chunk is cached: Vietnamese has a few thousand syllables, so after a few
# articles almost every chunk is a dict hit, and the hit path runs in C (``map`` over the cache's
# ``__getitem__``, then ``str.join``): this is the hot loop of topic scoring and shingling.
# A token never spans white space, so keying chunk by chunk gives the tokens of the whole text.
_CACHE_LIMIT = 200_000
_SENTENCE_ENDS = (".", "!", "?", "…")
_LINE_END = "\n"  # a chunk that ``split()`` never yields: stands for the end of a line
SENTENCE_MARK = "|"  # the token :func:`sentence_key` puts after each sentence; never in a key


def _chunk_key(chunk: str) -> str:
    # Only NFC, eth and case matter here: spaces and punctuation never reach a token. \w on the
    # NFC form covers precomposed Vietnamese letters, so a token never ends inside a letter:
    # "số" is one token and never matches inside "sống".
    folded = unicodedata.normalize("NFC", chunk).casefold().replace("ð", "đ")
    return " ".join(_syllable_key(token) for token in _TOKEN.findall(folded))


def _syllable_key(syllable: str) -> str:
    if syllable.isascii():
        return syllable
    tone = ""
    kept: list[str] = []
    for char in unicodedata.normalize("NFD", syllable.replace("đ", "dd")):
        if char in _TONE_DIGITS:
            tone = _TONE_DIGITS[char]
        elif char == _CIRCUMFLEX and kept:
            kept.append(kept[-1])
        else:
            kept.append(_VOWEL_MARKS.get(char, char))
    return "".join(kept) + tone


class _KeyCache(dict[str, str]):
    """Chunk -> its key; with ``sentences``, a chunk that ends a sentence (and the line end)
    also yields :data:`SENTENCE_MARK`."""

    def __init__(self, sentences: bool) -> None:
        super().__init__()
        self.sentences = sentences

    def key_of(self, chunks: list[str]) -> str:
        """The keys of ``chunks``, in order, joined by single spaces."""
        try:
            return " ".join(filter(None, map(self.__getitem__, chunks)))
        except KeyError:
            if len(self) >= _CACHE_LIMIT:
                self.clear()
            for chunk in chunks:
                if chunk not in self:
                    self[chunk] = self._compute(chunk)
            return " ".join(filter(None, map(self.__getitem__, chunks)))

    def _compute(self, chunk: str) -> str:
        if not self.sentences:
            return _chunk_key(chunk)
        if chunk == _LINE_END:
            return SENTENCE_MARK
        key = _chunk_key(chunk)
        if chunk.endswith(_SENTENCE_ENDS):
            return f"{key} {SENTENCE_MARK}" if key else SENTENCE_MARK
        return key


_PLAIN_KEYS = _KeyCache(sentences=False)
_SENTENCE_KEYS = _KeyCache(sentences=True)


def match_key(text: str) -> str:
    """Return the tone-convention-independent, case-folded key of ``text``.

    Tokens are joined by single spaces; Vietnamese letters are spelled in ASCII as in Telex and
    a syllable's tone becomes a digit after it (``"Hoá"`` and ``"hóa"`` both give ``"hoa1"``;
    ``"hoàn"`` gives ``"hoan2"``, ``"số"`` ``"soo1"``, ``"Đề"`` ``"ddee2"``).
    """
    return _PLAIN_KEYS.key_of(text.split())


def match_tokens(text: str) -> list[str]:
    """Split ``text`` into matching-key tokens (the words of :func:`match_key`)."""
    return match_key(text).split()


def sentence_key(text: str) -> str:
    """:func:`match_key` with :data:`SENTENCE_MARK` after each sentence: after a chunk ending
    in ``. ! ? …`` and at the end of each line."""
    chunks: list[str] = []
    for line in text.splitlines():
        chunks += line.split()
        chunks.append(_LINE_END)
    return _SENTENCE_KEYS.key_of(chunks)


def name_key(text: str) -> str:
    """A key for names typed loosely: diacritics, case, spaces and punctuation dropped
    (``"Hưng Yên"``, ``"hung yen"`` and ``"HungYen"`` all give ``"hungyen"``)."""
    decomposed = unicodedata.normalize("NFD", text.casefold().replace("đ", "d"))
    return "".join(char for char in decomposed if char.isalnum() and char.isascii())
