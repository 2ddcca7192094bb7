"""Generic article-link and next-page discovery, and the anti-bot interstitial detector."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urljoin

import pytest
from lxml import html as lxml_html

from crawler.discovery import ListingPage, find_article_links, find_next_page
from crawler.middlewares import detect_interstitial
from crawler.sources import Registry, load_registry
from crawler.urls import url_key


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def _mirror_pages(sites_dir: Path) -> list[dict]:
    manifest = json.loads((sites_dir / "manifest.json").read_text("utf-8"))
    return [r for r in manifest["resources"]
            if r["file"] and r["status"] == 200 and "html" in r["headers"]["Content-Type"]]


def _hrefs(body: bytes, base_url: str) -> set[str]:
    tree = lxml_html.fromstring(body)
    return {urljoin(base_url, href.strip()) for href in tree.xpath("//a/@href")}


def test_finds_exactly_the_articles_of_every_mirror_listing_page(
        sites_dir: Path, gold: dict[str, dict], registry: Registry) -> None:
    gold_keys = {url_key(u, registry) for g in gold.values() for u in (g["url"],
                                                                        *g["alternate_urls"])}
    pages = _mirror_pages(sites_dir)
    article_keys = {url_key(r["url"], registry) for r in pages}  # every page the mirror serves
    listings = 0
    for resource in pages:
        key = url_key(resource["url"], registry)
        body = (sites_dir / resource["file"]).read_bytes()
        on_page = {url_key(u, registry) for u in _hrefs(body, resource["url"])}
        listed_gold = on_page & gold_keys - {key}
        if key in gold_keys or len(listed_gold) == 0:
            continue  # an article page or a page listing no article
        listings += 1
        source = registry.source_for_url(resource["url"])
        found = {url_key(u, registry)
                 for u in find_article_links(body, resource["url"], set(source.all_hosts))}
        assert listed_gold <= found, f"{resource['url']} ({resource.get('form')}): missed"
        # Anything else found must be a page the mirror serves as an article, never a menu link.
        assert found <= article_keys, f"{resource['url']}: {sorted(found - article_keys)}"
    assert listings >= 10


def test_mirror_listing_pages_follow_to_their_next_page(sites_dir: Path) -> None:
    pages = {r["url"]: (sites_dir / r["file"]).read_bytes() for r in _mirror_pages(sites_dir)
             if "t2" in r["snapshots"]}
    expected = {
        "https://www.quangninh.gov.vn/Trang/TinTuc.aspx?cm=chuyen-doi-so":
            "https://www.quangninh.gov.vn/Trang/TinTuc.aspx?cm=chuyen-doi-so&p=2",
        "https://hue.gov.vn/vi-vn/Tin-tuc-su-kien/Chuyen-doi-so":
            "https://hue.gov.vn/vi-vn/Tin-tuc-su-kien/Chuyen-doi-so?Page=2",
        "https://hungyen.gov.vn/chuyen-muc-chuyen-doi-so-c1092-1.html":
            "https://hungyen.gov.vn/chuyen-muc-chuyen-doi-so-c1092-2.html",
        "https://vov.vn/chuyen-doi-so": "https://vov.vn/chuyen-doi-so?page=1",
    }
    for url, next_url in expected.items():
        assert find_next_page(pages[url], url, 1) == next_url
    # Last pages: the pager only offers earlier pages.
    assert find_next_page(pages["https://vov.vn/chuyen-doi-so?page=1"],
                          "https://vov.vn/chuyen-doi-so?page=1", 2) is None
    assert find_next_page(pages["https://hungyen.gov.vn/chuyen-muc-chuyen-doi-so-c1092-2.html"],
                          "https://hungyen.gov.vn/chuyen-muc-chuyen-doi-so-c1092-2.html", 2) is None


CARDS_GRID = """<html><body>
<header class="site-header"><a href="/">Trang chủ</a>
 <nav><ul><li><a href="/kinh-te">Kinh tế</a></li><li><a href="/xa-hoi">Xã hội</a></li>
 <li><a href="/van-hoa-the-thao-du-lich-giai-tri">Văn hóa, thể thao, du lịch và giải trí</a></li>
 </ul></nav></header>
<div class="grid">
 <div class="card"><a href="/bai-viet/ha-noi-khai-truong-trung-tam-du-lieu-moi">
  <img src="a.jpg"></a>
  <h3><a href="/bai-viet/ha-noi-khai-truong-trung-tam-du-lieu-moi">Hà Nội khai trương
   trung tâm dữ liệu mới</a></h3><p>Tóm tắt bài viết đầu tiên.</p>
  <a href="/bai-viet/ha-noi-khai-truong-trung-tam-du-lieu-moi">Xem thêm</a></div>
 <div class="card"><a href="/bai-viet/nong-dan-ban-hang-qua-san-thuong-mai-dien-tu">
  <img src="b.jpg"></a>
  <h3><a href="/bai-viet/nong-dan-ban-hang-qua-san-thuong-mai-dien-tu">Nông dân bán hàng qua
   sàn thương mại điện tử</a></h3></div>
 <div class="card"><h3><a href="/news/2025/03/14/ung-dung-ai">Ứng dụng AI trong
  y tế cơ sở</a></h3></div>
</div>
<div class="pagination"><a href="?page=1">1</a><a href="?page=2">2</a>
 <a rel="next" href="?page=2">»</a></div>
<div class="box"><h3>Tin khác</h3><ul>
 <li><a href="/bai-viet/tin-khac-khong-thuoc-danh-sach-nay-12345">Một tin khác không thuộc
  danh sách này</a></li></ul></div>
<footer><a href="/lien-he">Liên hệ</a><a href="https://facebook.com/page-of-the-site-123456">
 Trang Facebook chính thức của cổng thông tin</a></footer>
</body></html>"""

DATED_LIST = """<html><body><div id="menu"><a href="/gioi-thieu">Giới thiệu chung về tỉnh</a>
 <a href="/tin-tuc">Tin tức</a></div>
<div class="content"><h1>Tin tức - Sự kiện</h1><ul class="news">
 <li><a href="/tin-tuc/chi-tiet?id=20931">Tỉnh tổ chức hội nghị tổng kết công tác năm</a>
  <span>(12/01/2025)</span></li>
 <li><a href="/tin-tuc/chi-tiet?id=20930">Triển khai nền tảng họp không giấy tờ</a>
  <span>(10/01/2025)</span></li>
 <li><a href="/tin-tuc/chi-tiet?id=20925">Ra mắt tổng đài hỗ trợ người dân</a>
  <span>(08/01/2025)</span></li>
</ul><div class="pages"><span class="current">1</span> <a href="/tin-tuc?p=2">2</a>
 <a href="/tin-tuc?p=3">3</a> <a href="/tin-tuc?p=2">Trang sau</a></div>
<p><a href="/tag/chuyen-doi-so">Chuyển đổi số địa phương</a>
 <a href="javascript:void(0)">In trang này ra giấy</a></p></div></body></html>"""


def test_cards_grid_gives_articles_not_chrome() -> None:
    links = find_article_links(CARDS_GRID, "https://example.vn/danh-sach", {"example.vn"})
    assert links == [
        "https://example.vn/bai-viet/ha-noi-khai-truong-trung-tam-du-lieu-moi",
        "https://example.vn/bai-viet/nong-dan-ban-hang-qua-san-thuong-mai-dien-tu",
        "https://example.vn/news/2025/03/14/ung-dung-ai",
    ]
    assert find_next_page(CARDS_GRID, "https://example.vn/danh-sach", 1) == (
        "https://example.vn/danh-sach?page=2")


def test_dated_list_gives_articles_and_its_next_page() -> None:
    base = "https://www.tinh.gov.vn/tin-tuc"
    links = find_article_links(DATED_LIST, base, {"tinh.gov.vn"})
    assert links == [f"https://www.tinh.gov.vn/tin-tuc/chi-tiet?id={n}"
                     for n in (20931, 20930, 20925)]
    assert find_next_page(DATED_LIST, base, 1) == "https://www.tinh.gov.vn/tin-tuc?p=2"


def test_numbered_pager_gives_the_following_number() -> None:
    page = '<div class="paging">' + "".join(f'<a href="/l?p={n}">{n}</a>' for n in (1, 2, 3))
    assert find_next_page(page, "https://x.vn/l?p=2", 2) == "https://x.vn/l?p=3"
    assert find_next_page(page, "https://x.vn/l?p=3", 3) is None
    assert find_next_page('<a href="javascript:loadPage(2)">2</a>', "https://x.vn/l", 1) is None


@pytest.mark.parametrize("base", ["https://www.tinh.gov.vn/tin-tuc/danh-sach?page=2",
                                  "http://tinh.gov.vn:8080/a/b;p"])
def test_links_resolve_exactly_as_urljoin(base: str) -> None:
    hrefs = ["/tin-tuc/bai-1.html", "/a/./b", "/a/../b", "/..", "/.", "/a/..", "//cdn.vn/x",
             "/\\x", "/a?x=../b", "/tin tức/ả", "/a/..b", "/", "/?p=2", "/a;p?q", "/bb;",
             "/a?", "/a/%2e%2e/b", "b/c", "../c", "?p=3", "https://tinh.gov.vn/d"]
    page = "".join(f"<a href='{href}'>x</a>" for href in hrefs)
    links = [link.url for link in ListingPage(page, base).links]
    assert links == [urljoin(base, href) for href in hrefs]


def test_other_hosts_and_garbage_give_nothing() -> None:
    assert find_article_links(CARDS_GRID, "https://example.vn/", {"other.vn"}) == []
    assert find_article_links("", "https://x.vn/", {"x.vn"}) == []
    assert find_article_links(b"\x00\xff not html", "https://x.vn/", {"x.vn"}) == []


# ---------------------------------------------------------------------------- interstitials

ARTICLE_WITH_WIDGETS = """<html><head><title>Tỉnh ra mắt ứng dụng công dân số</title></head>
<body><article><h1>Tỉnh ra mắt ứng dụng công dân số</h1>{paragraphs}</article>
<form class="comment"><div class="g-recaptcha" data-sitekey="x"></div></form>
<script>if (!document.cookie) {{ window.location.href = '/?consent=1'; }}</script>
</body></html>""".format(paragraphs="<p>" + "Người dân có thể gửi phản ánh, tra cứu hồ sơ và "
                         "thanh toán trực tuyến trên ứng dụng. " * 30 + "</p>")


@pytest.mark.parametrize("page", [
    "<html><head><title>Attention Required! | Cloudflare</title></head><body><h1>Sorry, you "
    "have been blocked</h1><p>This website is using a security service.</p></body></html>",
    "<html><head><title>Just a moment...</title></head><body><div id='challenge-form'></div>"
    "<script>window._cf_chl_opt={cvId:'3'};</script></body></html>",
    "<html><head><title>vov.vn</title></head><body><p>Checking your browser before accessing "
    "vov.vn.</p><script src='/cdn-cgi/challenge-platform/h/g/orchestrate/jsch/v1'></script>"
    "</body></html>",
    "<html><body><script>document.location='https://site.vn/?__js_p_=123';</script></body></html>",
    "<html><head><meta http-equiv='refresh' content='0;url=/verify'></head><body></body></html>",
    "<html><head><title>Xác minh bảo mật</title></head><body><form><div class='h-captcha' "
    "data-sitekey='abc'></div><button>Gửi</button></form></body></html>",
    # Only the parsed title reads like a challenge (entities, another line).
    "<html><head><title>Just&nbsp;a moment&#8230;</title></head><body></body></html>",
    "<html><head><title>Checking\n your BROWSER</title></head><body></body></html>",
])
def test_interstitials_are_detected(page: str) -> None:
    assert detect_interstitial(page) is not None


SHORT_ARTICLE = """<html><head><title>{title}</title></head><body><h1>{title}</h1>
<p>Công an tỉnh đã xác minh, làm sạch dữ liệu dân cư cho 9.233 trường hợp đối tượng bảo trợ xã
hội để chi trả trợ cấp không dùng tiền mặt.</p></body></html>"""


@pytest.mark.parametrize("title", [
    "Xác minh thông tin 9.233 trường hợp trong Cơ sở dữ liệu quốc gia về dân cư",
    "Trong triển khai, xác minh thông tin, chi trả an sinh xã hội qua tài khoản - Cổng thông tin "
    "điện tử tỉnh Đồng Nai",
    "Xác minh danh tính",
    "Access denied: tin tặc tấn công cổng thông tin của tỉnh bị chặn đứng như thế nào",
])
def test_short_articles_with_challenge_words_in_the_headline_are_kept(title: str) -> None:
    assert detect_interstitial(SHORT_ARTICLE.format(title=title)) is None


def test_real_pages_are_not_interstitials(sites_dir: Path) -> None:
    assert detect_interstitial(ARTICLE_WITH_WIDGETS) is None
    assert detect_interstitial("") is None
    interstitials = []
    for resource in _mirror_pages(sites_dir):
        if detect_interstitial((sites_dir / resource["file"]).read_bytes()):
            interstitials.append(resource["url"])
    assert interstitials == ["https://vov.vn/xa-hoi/trang-bi-chan-kiem-tra-post1155790.vov"]
