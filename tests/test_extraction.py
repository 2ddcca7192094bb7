"""General extraction rules, on small hand-written pages."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.extraction import Article, extract_article, parse_credit, parse_vietnamese_date

TONE_MARKS = "\u0300\u0301\u0303\u0309\u0323"
URL = "https://example.gov.vn/tin-tuc/bai-viet-123.html"

PARAGRAPHS = [
    "Sáng ngày 20/7, Ủy ban nhân dân tỉnh tổ chức hội nghị triển khai kế hoạch chuyển đổi số "
    "năm 2024 với sự tham dự của lãnh đạo các sở, ban, ngành và các huyện, thành phố.",
    "Theo báo cáo, tỷ lệ hồ sơ thủ tục hành chính được giải quyết trực tuyến toàn trình đã "
    "đạt 65%, tăng mạnh so với cùng kỳ năm trước nhờ việc số hóa kết quả giải quyết.",
    "Phát biểu kết luận, đồng chí Phó Chủ tịch UBND tỉnh yêu cầu các đơn vị tiếp tục đẩy mạnh "
    "ứng dụng công nghệ số, bảo đảm an toàn thông tin và nâng cao kỹ năng số cho người dân.",
]


def page(
    body_extra: str = "",
    *,
    head: str = "",
    before_title: str = "",
    date_line: str = "",
    paragraphs: list[str] = PARAGRAPHS,
    charset: str = "utf-8",
) -> str:
    """A small portal page: header, title, date line, body, extras, sidebar."""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f'<html lang="vi"><head><meta charset="{charset}"><title>Hội nghị chuyển đổi số</title>'
        f"{head}</head><body><header>{before_title}</header><div class='detail'>"
        f"<h1>Hội nghị chuyển đổi số</h1><div class='date'>{date_line}</div>"
        f"<div class='content'>{body}{body_extra}</div></div></body></html>"
    )


def to_cp1258(text: str) -> bytes:
    """Encode as windows-1258 does: precomposed vowels where the code page has them, the
    tone mark as a separate combining character."""
    out = bytearray()
    for char in text:
        try:
            out += char.encode("cp1258")
        except UnicodeEncodeError:
            decomposed = unicodedata.normalize("NFD", char)
            tone = next(mark for mark in decomposed if mark in TONE_MARKS)
            base = unicodedata.normalize("NFC", decomposed.replace(tone, ""))
            out += (base + tone).encode("cp1258")
    return bytes(out)


def test_windows_1258_bytes_are_decoded_to_nfc() -> None:
    html = to_cp1258(page(charset="windows-1258"))
    article = extract_article(html, URL, encoding="windows-1258")
    assert article.title == "Hội nghị chuyển đổi số"
    assert article.text.split("\n") == PARAGRAPHS


def test_windows_1258_found_from_meta_charset_without_http_charset() -> None:
    html = to_cp1258(page(charset="windows-1258"))
    assert extract_article(html, URL).text.split("\n") == PARAGRAPHS


def test_nfd_input_comes_out_nfc() -> None:
    html = unicodedata.normalize("NFD", page()).encode("utf-8")
    article = extract_article(html, URL)
    assert article.title == "Hội nghị chuyển đổi số"
    assert article.text == unicodedata.normalize("NFC", article.text)
    assert article.text.split("\n") == PARAGRAPHS


def test_eth_typo_in_title_is_repaired() -> None:
    html = page().replace("<h1>Hội nghị chuyển đổi số</h1>", "<h1>Hội nghị chuyển ðổi số</h1>")
    assert extract_article(html, URL).title == "Hội nghị chuyển đổi số"


def test_article_date_line_beats_header_clock() -> None:
    html = page(
        before_title="<span class='clock'>Thứ Ba, 05/11/2024 15:15 (GMT +7)</span>",
        date_line="Thứ Hai, 20/07/2024 08:15",
    )
    assert extract_article(html, URL).published == "2024-07-20T08:15:00+07:00"


def test_relative_date_is_ignored_for_structured_metadata() -> None:
    html = page(
        head='<meta property="article:published_time" content="2024-07-20T08:15:00+07:00">',
        date_line="Cập nhật: 3 giờ trước",
    )
    article = extract_article(html, URL)
    assert article.published == "2024-07-20T08:15:00+07:00"
    assert "giờ trước" not in article.text


def test_json_ld_date_and_author() -> None:
    ld = (
        '<script type="application/ld+json">{"@type": "NewsArticle", '
        '"datePublished": "2024-07-20T08:15:00+07:00", '
        '"author": {"@type": "Person", "name": "Thu Hà"}}</script>'
    )
    article = extract_article(page(head=ld, date_line="Cập nhật: 2 giờ trước"), URL)
    assert (article.published, article.author) == ("2024-07-20T08:15:00+07:00", "Thu Hà")


def test_date_without_time_stays_a_bare_date() -> None:
    assert extract_article(page(date_line="Ngày cập nhật 05/12/2022"), URL).published == (
        "2022-12-05"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Thứ Hai, 20/07/2024 08:15", "2024-07-20T08:15:00+07:00"),
        ("Cập nhật: 08:15 - 20/07/2024", "2024-07-20T08:15:00+07:00"),
        ("Ngày đăng: 20-07-2024", "2024-07-20"),
        ("Thứ 3, 30/11/2021 | 18:51:59 [GMT +7]", "2021-11-30T18:51:59+07:00"),
        ("Hà Nội, ngày 20 tháng 7 năm 2024", "2024-07-20"),
        ("31/02/2024 10:00", None),
        ("3 giờ trước", None),
    ],
)
def test_vietnamese_date_lines(line: str, expected: str | None) -> None:
    assert parse_vietnamese_date(line) == expected


def test_nguon_line_becomes_original_source_and_leaves_body() -> None:
    html = page("<p>Nguồn: baohungyen.vn</p>")
    article = extract_article(html, URL)
    assert article.original_source == "baohungyen.vn"
    assert article.text.split("\n") == PARAGRAPHS


def test_theo_line_becomes_original_source_and_leaves_body() -> None:
    html = page('<p style="text-align:right"><em>Theo VOV</em></p>')
    article = extract_article(html, URL)
    assert article.original_source == "VOV"
    assert "Theo VOV" not in article.text


def test_right_aligned_name_becomes_author() -> None:
    html = page('<p style="text-align:right"><strong>Minh Nguyệt</strong></p>')
    article = extract_article(html, URL)
    assert article.author == "Minh Nguyệt"
    assert "Minh Nguyệt" not in article.text


def test_byline_with_outlet_gives_author_and_source() -> None:
    html = page("", paragraphs=PARAGRAPHS).replace(
        "</div></div></body>",
        "</div><div class='article-author'>Hà Phương/VOV.VN</div></div></body>",
    )
    article = extract_article(html, URL)
    assert (article.author, article.original_source) == ("Hà Phương", "VOV.VN")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Tác giả: Minh Tuấn", ("Minh Tuấn", None)),
        ("Nguồn: baohungyen.vn", (None, "baohungyen.vn")),
        ("(Theo TTXVN)", (None, "TTXVN")),
        ("PV", (None, None)),
        ("DongNai: Web portal", (None, None)),
        ("Cổng Thông tin điện tử tỉnh", (None, None)),
        ("Theo báo cáo của Sở, tỷ lệ hồ sơ trực tuyến đạt 65% và tiếp tục tăng mạnh", (None, None)),
    ],
)
def test_credit_lines(line: str, expected: tuple[str | None, str | None]) -> None:
    assert parse_credit(line) == expected


def test_related_news_rating_and_counters_are_dropped() -> None:
    extras = (
        "<div class='box'><h3>Tin khác</h3><ul><li><a href='/a'>Giá lúa tăng mạnh sau thu hoạch"
        "</a></li></ul></div><div class='rating'>Đánh giá bài viết: ★★★★★</div>"
        "<div>Chia sẻ Zalo</div><div class='online-count'>283 người đang online</div>"
        "<p>1.234 lượt xem</p>"
    )
    text = extract_article(page(extras), URL).text
    for marker in ("Tin khác", "Giá lúa", "Đánh giá", "Chia sẻ", "online", "lượt xem"):
        assert marker not in text


def test_image_caption_is_dropped() -> None:
    figure = (
        "<div style='text-align:center'><img src='/a.jpg'><br><em>Quang cảnh hội nghị</em></div>"
    )
    html = page().replace("</p>", "</p>" + figure, 1)
    assert extract_article(html, URL).text.split("\n") == PARAGRAPHS


def test_lead_paragraph_outside_body_container_is_kept_first() -> None:
    lead = "Tỉnh vừa công bố kết quả chỉ số chuyển đổi số năm 2024, đứng thứ 5 toàn quốc."
    html = page().replace(
        "<div class='content'>", f"<div class='sapo'>{lead}</div><div class='content'>"
    )
    assert extract_article(html, URL).text.split("\n") == [lead, *PARAGRAPHS]


def test_canonical_url_is_made_absolute() -> None:
    html = page(head='<link rel="canonical" href="/tin-tuc/bai-viet-123.html">')
    assert extract_article(html, URL + "?utm_source=zalo").canonical_url == URL


def test_metadata_fields() -> None:
    article = extract_article(page(date_line="20/07/2024"), URL)
    assert article.language == "vi"
    assert article.title == "Hội nghị chuyển đổi số"
    assert not article.is_empty


@pytest.mark.parametrize(
    "junk", [b"", b"\x00\x01\xff\xfe", b"<html><body></body></html>", "<<<>>>", b"\xff" * 100]
)
def test_garbage_gives_an_empty_article(junk: bytes | str) -> None:
    article = extract_article(junk, URL)
    assert isinstance(article, Article)
    assert article.is_empty


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=2000))
def test_arbitrary_input_never_raises(junk: bytes | str) -> None:
    assert isinstance(extract_article(junk, URL), Article)


# --- pages without Vietnamese-portal evidence (issue 14) --------------------------------------

ENGLISH = [
    "The city council approved the new budget on Tuesday after a debate that lasted more than "
    "six hours, with twelve members voting in favour and three against the proposal.",
    "The budget sets aside money for road repairs, two new libraries and a pilot programme "
    "that will put public services online for residents of the outer districts.",
    "Opponents said the plan relied on optimistic revenue forecasts and warned that the city "
    "could face a shortfall if the economy slowed down during the coming year.",
]
EN_URL = "https://news.example.com/2026/11/council-budget"


def english_page(body_class: str = "entry-content", extra: str = "") -> str:
    body = "".join(f"<p>{p}</p>" for p in ENGLISH)
    return (f"<html lang='en'><head><title>Council approves budget</title></head><body>"
            f"<nav><a href='/'>Home</a> <a href='/world'>World</a></nav>"
            f"<article><h1>Council approves budget</h1><div class='{body_class}'>{body}</div>"
            f"</article>{extra}<footer>Contact us</footer></body></html>")


@pytest.mark.parametrize("container", ["entry-content-read-more", "l-sidebar-fixed",
                                       "share-wrapper content"])
def test_a_body_container_named_with_a_widget_word_keeps_the_article(container: str) -> None:
    article = extract_article(english_page(container), EN_URL)
    assert all(p in article.text for p in ENGLISH)


def test_intro_widgets_away_from_the_headline_are_not_put_in_front() -> None:
    far = "".join(f"<div><span>filler {i}</span></div>" for i in range(70))
    widget = ("<div class='intro'>Popular articles: the ten most read stories of the week on "
              "this site, updated every hour</div>")
    article = extract_article(english_page(extra=far + widget), EN_URL)
    assert "Popular articles" not in article.text
    assert article.text.startswith(ENGLISH[0])


def test_react_comment_separators_do_not_cut_text() -> None:
    html = english_page().replace("six hours", "six<!-- --> hours")
    assert ENGLISH[0] in extract_article(html, EN_URL).text


def test_a_comment_between_an_image_and_its_caption_is_harmless() -> None:
    html = page("<div><img src='a.jpg'></div><!-- ảnh --><p><em>Ảnh minh họa</em></p>")
    article = extract_article(html, URL)
    assert article.failure is None and PARAGRAPHS[0] in article.text


def test_read_more_link_lines_leave_the_body() -> None:
    html = english_page().replace(
        f"<p>{ENGLISH[1]}</p>",
        f"<p>{ENGLISH[1]}</p><p>Read more: <a href='/x'>Why the city needs new libraries</a></p>")
    article = extract_article(html, EN_URL)
    assert "Read more" not in article.text and ENGLISH[2] in article.text


def test_an_empty_article_carries_its_reason() -> None:
    assert extract_article(b"", URL).failure == "no HTML document in the response"
    empty = extract_article("<html><body><div><a href='/'>Home</a></div></body></html>", URL)
    assert empty.is_empty and empty.failure == "no article text found on the page"
    assert extract_article(page(), URL).failure is None
