"""End-to-end crawls of the CMS families the offline mirror does not cover.

Each family's fixture (tests/data/families/<family>.*.html, written after the evidenced markup)
is filled with four written articles over two listing pages, served by the real mirror server
and crawled with ``scrapy crawl news`` through ``--via``, the source configured by its family
only (plus its listing URL): every article must be found, the second ones through page 2, with
the right title and date.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

import pytest

from monitor.mirror import MirrorServer
from tests.test_spider import crawl, write_registry

FIXTURES = Path(__file__).parent / "data" / "families"
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Case:
    """A family fixture: its source entry, listing pages and article URLs."""

    family: str
    listing: str
    articles: tuple[str, ...]  # four: two on page 1, two on page 2
    page2: str  # URL of page 2 (GET) or the POST target
    pager: str  # page 1's link to page 2
    form: dict[str, str] = field(default_factory=dict)  # POST fields of page 2
    links: str | None = None  # the source's own listing selector, where it has one

    @property
    def source(self) -> dict:
        listing = {"url": self.listing, **({"links": self.links} if self.links else {})}
        return {"name": self.family.replace("-", ""), "family": self.family,
                "listings": [listing]}


VIEWSTATE = "/wEPDwUKMTY3NzE5MjIyNg9kFgJmD2QWAgIDD2QWAgIBDxYCHgtfIUl0ZW1Db3VudAIKZGQ="
CASES = [
    Case("sharepoint-tandan", "https://www.dienbien.gov.vn/portal/Pages/Tin-tuc-su-kien.aspx",
         ("https://www.dienbien.gov.vn/portal/Pages/2025-11-3/Dien-Bien-day-manh-chuyen-doi-so-"
          "trong-co-quan-nha-nuoc-x7k2pq9d.aspx",
          "https://www.dienbien.gov.vn/portal/Pages/2025-11-5/Ho-tro-nguoi-dan-kich-hoat-dinh-"
          "danh-dien-tu-muc-do-2-m3n8tz4a.aspx",
          "https://www.dienbien.gov.vn/portal/Pages/2025-10-28/Trien-khai-nen-tang-hoc-tap-so-"
          "cho-can-bo-cap-xa-q9w2er7t.aspx",
          "https://www.dienbien.gov.vn/portal/Pages/2025-10-30/Nang-ty-le-ho-so-truc-tuyen-toan-"
          "trinh-tai-bo-phan-mot-cua-b5v1cx3z.aspx"),
         page2="https://www.dienbien.gov.vn/portal/Pages/Tin-tuc-su-kien.aspx?PageIndex=2",
         pager='<a href="?PageIndex=2">2</a> <a href="?PageIndex=2">Tiếp</a>'),
    Case("liferay", "https://thainguyen.gov.vn/vi_VN/tin-tuc-chuyen-do-so",
         tuple(f"https://thainguyen.gov.vn/vi_VN/tin-tuc-chuyen-do-so/-/asset_publisher/Xy7Lm2Qw"
               f"/content/{slug}/{number}" for slug, number in (
                   ("thai-nguyen-mo-rong-dich-vu-cong-truc-tuyen-toan-trinh", 14118849),
                   ("so-hoa-ho-so-ho-tich-tai-cac-xa-phuong", 14118850),
                   ("ra-mat-mo-hinh-to-cong-nghe-so-cong-dong", 14117002),
                   ("tap-huan-ky-nang-so-cho-doan-vien-thanh-nien", 14117003))),
         page2=("https://thainguyen.gov.vn/vi_VN/tin-tuc-chuyen-do-so?p_p_id=101_INSTANCE_Xy7Lm2Qw"
                "&_101_INSTANCE_Xy7Lm2Qw_cur=2"),
         pager=('<li><a href="/vi_VN/tin-tuc-chuyen-do-so?p_p_id=101_INSTANCE_Xy7Lm2Qw'
                '&amp;_101_INSTANCE_Xy7Lm2Qw_cur=2">Tiếp</a></li>')),
    Case("webforms-postback", "https://khanhhoa.gov.vn/vi/tin-hoat-dong-cua-lanh-dao-tinh",
         tuple(f"https://khanhhoa.gov.vn/vi/tin-hoat-dong-cua-lanh-dao-tinh/{slug}" for slug in (
             "lanh-dao-tinh-lam-viec-voi-so-khoa-hoc-va-cong-nghe-ve-chuyen-doi-so",
             "khanh-hoa-khai-truong-trung-tam-dieu-hanh-thong-minh-cua-tinh",
             "chu-tich-ubnd-tinh-doi-thoai-voi-doanh-nghiep-cong-nghe-so",
             "tinh-khanh-hoa-ky-ket-hop-tac-phat-trien-ha-tang-du-lieu")),
         page2="https://khanhhoa.gov.vn/vi/tin-hoat-dong-cua-lanh-dao-tinh",
         pager=('<a href="javascript:__doPostBack(&#39;ctl00$ContentPlaceHolder1$gvNews&#39;,'
                '&#39;Page$2&#39;)">2</a>'),
         form={"__EVENTTARGET": "ctl00$ContentPlaceHolder1$gvNews", "__EVENTARGUMENT": "Page$2",
               "__VIEWSTATE": VIEWSTATE}),
    Case("vnportal", "https://nghean.gov.vn/tin-tuc-su-kien-73053",
         tuple(f"https://nghean.gov.vn/tin-tuc-su-kien-73053/{slug}" for slug in (
             "nghe-an-cong-bo-ke-hoach-chuyen-doi-so-nam-2026-900101",
             "ung-dung-cong-dan-so-duoc-trien-khai-tai-cac-phuong-900102",
             "dao-tao-ky-nang-so-cho-to-cong-nghe-so-cong-dong-900095",
             "nghe-an-ket-noi-du-lieu-dan-cu-voi-he-thong-mot-cua-900096")),
         page2="https://nghean.gov.vn/tin-tuc-su-kien-73053?page=2",
         pager='<li><a href="/tin-tuc-su-kien-73053?page=2">2</a></li>'),
    Case("ui-article-in-menu", "https://ninhbinh.gov.vn/kinh-te",
         tuple(f"https://ninhbinh.gov.vn/kinh-te/{slug}.html" for slug in (
             "ninh-binh-so-hoa-quy-trinh-cap-phep-dau-tu-428101",
             "doanh-nghiep-nho-va-vua-duoc-ho-tro-chuyen-doi-so-428102",
             "hoi-cho-thuong-mai-dien-tu-nong-san-ninh-binh-428060",
             "thanh-toan-khong-dung-tien-mat-tai-cac-cho-truyen-thong-428061")),
         page2=("https://ninhbinh.gov.vn/DesktopModule/UIArticleInMenu/"
                "ArticleInMenuPagination.aspx/LoadArticle"),
         pager='<a href="javascript:loadPage(2)">2</a>',
         form={"article_category_id": "1203", "site_id": "4", "page": "2", "page_size": "15",
               "lang": "vi-VN"}),
    Case("layout-type-2", "https://gialai.gov.vn/tin-tuc/thong-tin-chi-dao-dieu-hanh",
         tuple(f"https://gialai.gov.vn/tin-tuc/thong-tin-chi-dao-dieu-hanh/{slug}.html"
               for slug in ("gia-lai-trien-khai-so-tay-chuyen-doi-so-cho-cap-xa",
                            "ra-soat-du-lieu-dat-dai-phuc-vu-dich-vu-cong-truc-tuyen",
                            "ubnd-tinh-chi-dao-day-nhanh-giai-ngan-von-chuyen-doi-so",
                            "tang-cuong-an-toan-thong-tin-tai-cac-co-quan-nha-nuoc")),
         page2="https://gialai.gov.vn/tin-tuc/thong-tin-chi-dao-dieu-hanh?page=2",
         pager=('<a href="/tin-tuc/thong-tin-chi-dao-dieu-hanh?page=2">2</a> <a class="next-pages"'
                ' href="/tin-tuc/thong-tin-chi-dao-dieu-hanh?page=2">›</a>')),
    Case("drupal", "https://phutho.gov.vn/vi/thanhpholehoi/cac-le-hoi",
         tuple(f"https://phutho.gov.vn/vi/thanhpholehoi/{slug}" for slug in (
             "le-hoi-den-hung-ung-dung-ve-dien-tu-va-ban-do-so",
             "phu-tho-so-hoa-ho-so-di-san-hat-xoan",
             "le-hoi-tro-tram-gioi-thieu-tren-nen-tang-du-lich-thong-minh",
             "le-hoi-rung-cuoc-thu-nghiem-dat-cho-truc-tuyen")),
         page2="https://phutho.gov.vn/vi/thanhpholehoi/cac-le-hoi?page=1",
         pager='<li><a href="?page=1">2</a></li>', links=".post-item .pt-post__title a"),
]
TITLES = ("Tỉnh đẩy mạnh chuyển đổi số trong cơ quan nhà nước năm 2025",
          "Hỗ trợ người dân kích hoạt định danh điện tử mức độ 2",
          "Triển khai nền tảng học tập số cho cán bộ cấp xã",
          "Nâng tỷ lệ hồ sơ trực tuyến toàn trình tại bộ phận một cửa")
DATES = ("03/11/2025", "05/11/2025", "28/10/2025", "30/10/2025")  # D/M/Y, two with D ≤ 12


def _body(number: int) -> str:
    return "".join(
        f"<p>Đoạn {k} của bài {number}: Ủy ban nhân dân tỉnh chỉ đạo các sở, ngành, địa phương "
        f"đẩy mạnh chuyển đổi số, hoàn thiện cơ sở dữ liệu dân cư, nâng tỷ lệ hồ sơ trực tuyến "
        f"toàn trình và đào tạo kỹ năng số cho người dân trong quý {k}.</p>" for k in range(1, 6))


def _template(case: Case, part: str) -> Template:
    return Template((FIXTURES / f"{case.family}.{part}.html").read_text("utf-8"))


def _listing_page(case: Case, numbers: range, pager: str, page: str = "listing") -> str:
    item = _template(case, "item")
    items = "".join(item.substitute(url=urlsplit(case.articles[n]).path, title=TITLES[n],
                                    date=DATES[n]) for n in numbers)
    return _template(case, page).substitute(items=items, pager=pager, viewstate=VIEWSTATE)


def _second_page(case: Case) -> str:
    """Page 2: the listing page again, or the family's own answer (a POST's HTML fragment)."""
    page = "page2" if (FIXTURES / f"{case.family}.page2.html").exists() else "listing"
    return _listing_page(case, range(2, 4), "", page)


def write_site(case: Case, root: Path) -> Path:
    """A mirror folder: listing page 1 (linking page 2), page 2, and the four articles."""
    pages = [("GET", case.listing, {}, _listing_page(case, range(2), case.pager)),
             ("POST" if case.form else "GET", case.page2, case.form, _second_page(case)),
             *(("GET", url, {}, _template(case, "article").substitute(
                 title=TITLES[n], date=DATES[n], body=_body(n)))
               for n, url in enumerate(case.articles))]
    resources = []
    for number, (method, url, form, html) in enumerate(pages):
        (root / f"{number}.html").write_text(html, "utf-8")
        resources.append({"url": url, "method": method, "form": form, "snapshots": ["t1"],
                          "status": 200, "file": f"{number}.html",
                          "headers": {"Content-Type": "text/html; charset=utf-8"}})
    (root / "manifest.json").write_text(json.dumps({"snapshots": ["t1"],
                                                    "resources": resources}), "utf-8")
    return root


@pytest.mark.parametrize("case", CASES, ids=[case.family for case in CASES])
def test_family_fixture_is_crawled_through_page_two_with_titles_and_dates(
        case: Case, tmp_path: Path, database_url: str) -> None:
    site = tmp_path / "site"
    site.mkdir()
    registry = write_registry(tmp_path / "registry.yaml", [case.source])
    with MirrorServer(write_site(case, site), snapshot="t1") as mirror:
        items, log = crawl(mirror, tmp_path, database_url, registry=registry)
        fetched = {(record.method, record.url, record.status) for record in mirror.requests}
    assert ("POST" if case.form else "GET", case.page2, 200) in fetched, log[-3000:]
    found = {item["url"]: item for item in items}
    assert set(found) == set(case.articles), log[-3000:]
    for n, url in enumerate(case.articles):
        day, month, year = DATES[n].split("/")
        assert found[url]["title"] == TITLES[n]
        assert found[url]["published"].startswith(f"{year}-{month}-{day}"), found[url]
