"""The Vietnamese normaliser: one matching key whatever the spelling, stored text left as typed."""

from __future__ import annotations

import unicodedata

import pytest

from vntext import match_key, match_tokens, normalize_text


def test_nfd_input_gives_the_same_key_and_nfc_text() -> None:
    nfc = "Chuyển đổi số ở Thừa Thiên Huế"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    assert match_key(nfd) == match_key(nfc)
    assert normalize_text(nfd) == nfc


@pytest.mark.parametrize(
    ("old_style", "new_style"),
    [
        ("hoá", "hóa"),
        ("Uỷ ban", "Ủy ban"),
        ("thuỷ lợi", "thủy lợi"),
        ("khoẻ", "khỏe"),
        ("quý", "qúy"),
    ],
)
def test_both_tone_mark_conventions_give_one_key(old_style: str, new_style: str) -> None:
    assert match_key(old_style) == match_key(new_style)


def test_closed_syllables_keep_their_letters() -> None:
    assert match_key("hoàn") == "hoan2"
    assert match_key("hoàn") != match_key("hoà")
    assert match_key("hoán") != match_key("hoá")


def test_tones_still_distinguish_words() -> None:
    assert match_key("số") != match_key("sổ")
    assert match_key("đất") != match_key("đặt")


def test_eth_is_repaired_for_storage_and_matching() -> None:
    typed = "Ðề án 06 ðược triển khai"
    assert normalize_text(typed) == "Đề án 06 được triển khai"
    assert match_key(typed) == match_key("Đề án 06 được triển khai")


def test_non_breaking_and_zero_width_spaces_separate_words() -> None:
    assert match_tokens("chuyển\u00a0đổi\u202fsố") == match_tokens("chuyển đổi số")
    assert normalize_text("chuyển\u00a0đổi  số\u200b") == "chuyển đổi số"


def test_case_is_folded_including_vietnamese_capitals() -> None:
    assert match_key("CHUYỂN ĐỔI SỐ") == match_key("chuyển đổi số") == match_key("Chuyển Đổi Số")


def test_a_word_never_matches_inside_another() -> None:
    assert match_key("số") not in match_tokens("cuộc sống, sốt cao, sổ sách, SỐNG")
    assert match_key("số") in match_tokens("cuộc sống số")


def test_punctuation_splits_words() -> None:
    assert match_tokens("57-NQ/TW, Hue-S.") == ["57", "nq", "tw", "hue", "s"]


def test_stored_text_keeps_its_spelling() -> None:
    assert (
        normalize_text("Uỷ ban nhân dân  tỉnh\u00a0\n  số hoá ") == "Uỷ ban nhân dân tỉnh\nsố hoá"
    )
