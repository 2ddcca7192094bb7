"""Vietnamese text normalisation.

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


# Vietnamese has a few thousand syllables, so caching their keys makes keying a long text cheap
# (a plain dict: its lookup costs half of an lru_cache call, and this is the hot loop).
_KEY_CACHE: dict[str, str] = {}
_KEY_CACHE_LIMIT = 200_000


def _cached_key(syllable: str) -> str:
    if len(_KEY_CACHE) >= _KEY_CACHE_LIMIT:
        _KEY_CACHE.clear()
    key = _KEY_CACHE[syllable] = _syllable_key(syllable)
    return key


def _syllable_key(syllable: str) -> str:
    if syllable.isascii():
        return syllable
    decomposed = unicodedata.normalize("NFD", syllable)
    tone = ""
    kept = []
    for char in decomposed:
        if char in _TONE_DIGITS:
            tone = _TONE_DIGITS[char]
        else:
            kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept)) + tone


def match_tokens(text: str) -> list[str]:
    """Split ``text`` into matching-key tokens (see :func:`match_key`)."""
    # Only NFC, eth and case matter here: spaces and punctuation never reach a token.
    folded = unicodedata.normalize("NFC", text).casefold().replace("ð", "đ")
    # \w on the NFC form covers precomposed Vietnamese letters, so a token never ends
    # inside a letter: "số" is one token and never matches inside "sống".
    cached = _KEY_CACHE.get
    return [cached(token) or _cached_key(token) for token in _TOKEN.findall(folded)]


def match_key(text: str) -> str:
    """Return the tone-convention-independent, case-folded key of ``text``.

    Tokens are joined by single spaces; a syllable's tone becomes a digit after it
    (``"Hoá"`` and ``"hóa"`` both give ``"hoa1"``; ``"hoàn"`` gives ``"hoan2"``).
    """
    return " ".join(match_tokens(text))
