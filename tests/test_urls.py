"""URL identity: canonical_url and url_key on the registry's sources and on junk."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler.sources import REPO_SOURCES_PATH, Registry, load_registry
from crawler.urls import canonical_url, is_tracking_param, url_key

QN_ARTICLE = "https://www.quangninh.gov.vn/Trang/ChiTietTinTuc.aspx?nid=428620"
HUE_PATH = "/vi-vn/Tin-tuc-su-kien/tid/Festival-Hue-2024/newsid/546C8472-E619-272D-24F2-DF40033"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(REPO_SOURCES_PATH)


def test_gold_urls_are_canonical_and_share_a_key_with_their_alternates(registry, gold):
    for article in gold.values():
        url = article["url"]
        assert canonical_url(url, registry) == url
        for alternate in article["alternate_urls"]:
            assert url_key(alternate, registry) == url_key(url, registry), alternate


def test_old_hue_domain_becomes_the_new_one(registry: Registry):
    assert canonical_url(f"http://thuathienhue.gov.vn{HUE_PATH}", registry) == (
        f"https://hue.gov.vn{HUE_PATH}")
    assert canonical_url(f"https://www.thuathienhue.gov.vn{HUE_PATH}", registry) == (
        f"https://hue.gov.vn{HUE_PATH}")


def test_sharepoint_lower_case_alias_takes_the_pages_canonical_link(registry: Registry):
    alias = QN_ARTICLE.lower()
    assert canonical_url(alias, registry) == alias  # a path's case is never changed on a guess
    assert canonical_url(alias, registry, page_canonical=QN_ARTICLE) == QN_ARTICLE
    assert canonical_url(alias, registry, page_canonical="/Trang/ChiTietTinTuc.aspx?nid=428620") \
        == QN_ARTICLE
    assert url_key(alias, registry) == url_key(QN_ARTICLE, registry)


def test_page_canonical_outside_the_source_is_ignored(registry: Registry):
    url = "https://hagiang.gov.vn/vi/tin-tuc-su-kien/a-1.html"
    assert canonical_url(url, registry, page_canonical="https://vov.vn/a-post1.vov") == url
    assert canonical_url(url, registry, page_canonical="javascript:void(0)") == url


def test_a_template_canonical_to_the_home_page_is_ignored(registry: Registry):
    url = "https://hagiang.gov.vn/vi/tin-tuc-su-kien/a-1.html"
    assert canonical_url(url, registry, page_canonical="https://hagiang.gov.vn/") == url
    assert canonical_url(url, registry, page_canonical="/") == url
    assert canonical_url("https://www.hagiang.gov.vn", registry,
                         page_canonical="/") == "https://hagiang.gov.vn/"


def test_path_case_matters_on_case_sensitive_sources(registry: Registry):
    assert url_key("https://vov.vn/Kinh-Te/a-post1.vov", registry) != url_key(
        "https://vov.vn/kinh-te/a-post1.vov", registry)


@pytest.mark.parametrize("param", [
    "utm_source=zalo", "utm_medium=share", "UTM_Campaign=x", "fbclid=IwAR0", "gclid=1", "dclid=1",
    "msclkid=1", "zarsrc=30", "zarsrc_id=1", "_ga=2.1", "mc_cid=1", "mc_eid=1", "igshid=1",
    "ref_src=twsrc",
])
def test_tracking_params_are_dropped(registry: Registry, param: str):
    url = f"https://hungyen.gov.vn/tin-c1.html?id=7&{param}&page=2"
    assert canonical_url(url, registry) == "https://hungyen.gov.vn/tin-c1.html?id=7&page=2"
    assert canonical_url(f"https://hungyen.gov.vn/tin-c1.html?{param}", registry) == (
        "https://hungyen.gov.vn/tin-c1.html")


@pytest.mark.parametrize("query", [
    "cid=12", "catid=3&ref=home", "keyword=chuy%E1%BB%83n+%C4%91%E1%BB%95i", "sessionid=1",
    "b=2&a=1", "Page=2", "x=1;y=2", "empty=", "flag",
])
def test_other_query_parameters_are_kept_as_written(query: str):
    url = f"https://example.gov.vn/list.aspx?{query}"
    assert canonical_url(url, registry=None) == url
    assert is_tracking_param(query.partition("=")[0]) is False


def test_url_key_ignores_query_order_but_canonical_url_keeps_it(registry: Registry):
    a, b = "https://vov.vn/tim-kiem?q=cds&page=2", "https://vov.vn/tim-kiem?page=2&q=cds"
    assert canonical_url(a, registry) == a
    assert url_key(a, registry) == url_key(b, registry)


@pytest.mark.parametrize(("url", "expected"), [
    ("https://vov.vn/a-post1.vov#comments", "https://vov.vn/a-post1.vov"),
    ("https://vov.vn:443/a-post1.vov", "https://vov.vn/a-post1.vov"),
    ("http://vov.vn:80/a-post1.vov", "https://vov.vn/a-post1.vov"),
    ("https://www.vov.vn/a-post1.vov", "https://vov.vn/a-post1.vov"),
    ("HTTPS://VOV.VN/a-post1.vov", "https://vov.vn/a-post1.vov"),
    ("  https://vov.vn/a-post1.vov\n", "https://vov.vn/a-post1.vov"),
    ("https://quangninh.gov.vn/Trang/X.aspx", "https://www.quangninh.gov.vn/Trang/X.aspx"),
    ("https://vov.vn", "https://vov.vn/"),
    ("https://vov.vn/chuyên-đổi/", "https://vov.vn/chuy%C3%AAn-%C4%91%E1%BB%95i/"),
    ("https://vov.vn/a%c3%aa", "https://vov.vn/a%C3%AA"),
    ("http://example.com:8080/a/?b=1#c", "http://example.com:8080/a/?b=1"),
    ("http://127.0.0.1:8765/x", "http://127.0.0.1:8765/x"),
])
def test_canonical_forms(registry: Registry, url: str, expected: str):
    assert canonical_url(url, registry) == expected


def test_default_registry_is_used_when_none_is_given():
    assert canonical_url("http://thuathienhue.gov.vn/a") == "https://hue.gov.vn/a"


@pytest.mark.parametrize("junk", [
    "", "   ", "junk", "/relative/path", "//vov.vn/x", "mailto:a@b.vn", "javascript:void(0)",
    "http://", "http://[::1", "http://a:b/", "http://a:99999999/", "https://xn--/", "http://.../",
    "http://a\x00b/", "https://vov.vn/%", "\ud800", "https://exa mple.vn/ x",
])
def test_junk_never_raises_and_non_urls_come_back_stripped(registry: Registry, junk: str):
    for registry_or_none in (registry, None):
        result = canonical_url(junk, registry_or_none, page_canonical=junk)
        assert isinstance(result, str) and isinstance(url_key(junk, registry_or_none), str)
        if not junk.strip().lower().startswith(("http://", "https://")):
            assert result == junk.strip()


URLISH = st.builds(
    "{}://{}{}{}{}".format,
    st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
    st.sampled_from(["vov.vn", "www.quangninh.gov.vn", "thuathienhue.gov.vn", "hue.gov.vn:443",
                     "example.com:8080", "127.0.0.1", "", "[::1]"]) | st.text(max_size=12),
    st.text(max_size=20).map(lambda s: "/" + s),
    st.text(max_size=20).map(lambda s: "?" + s) | st.just(""),
    st.text(max_size=8).map(lambda s: "#" + s) | st.just(""),
)


@given(st.text() | URLISH)
def test_canonical_url_and_url_key_never_raise_and_are_idempotent(registry: Registry, text: str):
    canonical = canonical_url(text, registry)
    assert canonical_url(canonical, registry) == canonical
    key = url_key(text, registry)
    assert url_key(key, registry) == key
    assert url_key(canonical, registry) == key
