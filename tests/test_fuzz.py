"""Property tests on arbitrary input: the entry points that read what the web sends never raise
and never hang (hypothesis deadline), whatever the bytes."""

from __future__ import annotations

import feedparser
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crawler.extraction import Article, extract_article
from crawler.safety import xml_entity_refusal
from crawler.spiders.news import read_sitemap
from crawler.urls import canonical_url, url_key

FUZZ = settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

# Bytes that look like markup often enough to reach the deep code paths.
_MARKUP = st.sampled_from([
    b"<html>", b"<head>", b"<title>", b"</title>", b"<meta charset='cp1258'>", b"<body>",
    b"<article>", b"<p>", b"</p>", b"<div class='content'>", b"</div>", b"<script>", b"<!--",
    b"<a href='/x'>", b"&amp;", b"&#0;", b"\x00", b"\xff\xfe", b"\xe1\xba\xbf",
    "Chuyển đổi số ngày 12/6/2025".encode(), b"<link rel=canonical href='http://[::1'>",
    b'<script type="application/ld+json">{"@type":"NewsArticle","datePublished":',
    b"<?xml version='1.0'?>", b"<!DOCTYPE r [<!ENTITY a 'b'>]>", b"<urlset>", b"<url><loc>",
    b"</loc></url>", b"<sitemapindex>", b"\x1f\x8b\x08\x00",
])
html_like = st.lists(st.one_of(_MARKUP, st.binary(max_size=40)), max_size=40).map(b"".join)
any_bytes = st.one_of(st.binary(max_size=2000), html_like)
urls = st.one_of(
    st.text(max_size=200),
    st.builds(lambda host, path: f"https://{host}/{path}",
              st.text(max_size=30), st.text(max_size=60)),
    st.sampled_from(["http://[::1", "https://hue.gov.vn:99999/", "//x", "https://a.vn/%zz?a=%",
                     "HTTPS://WWW.Hue.GOV.vn/A?utm_source=x#f", "javascript:alert(1)"]),
)


@FUZZ
@given(body=any_bytes, url=urls, encoding=st.one_of(st.none(), st.text(max_size=12)))
def test_extraction_never_raises(body: bytes, url: str, encoding: str | None) -> None:
    assert isinstance(extract_article(body, url, encoding=encoding), Article)


@FUZZ
@given(url=urls, canonical=st.one_of(st.none(), urls))
def test_url_identity_never_raises(url: str, canonical: str | None) -> None:
    assert isinstance(canonical_url(url, page_canonical=canonical), str)
    assert isinstance(url_key(url), str)


@FUZZ
@given(body=any_bytes)
@example(body=b"\x1f\x8b\x08" + bytes(12))  # a gzip header, then a broken deflate block
def test_sitemap_and_xml_checks_never_raise(body: bytes) -> None:
    sitemap = read_sitemap(body, max_size=1024 * 1024)
    assert sitemap is None or sitemap[0] in ("urlset", "sitemapindex")
    assert xml_entity_refusal(body) is None or "refused" in xml_entity_refusal(body)


@FUZZ
@given(body=any_bytes)
def test_feed_reading_never_raises(body: bytes) -> None:
    if xml_entity_refusal(body) is None:  # the spider's order: refuse, then feedparser
        feed = feedparser.parse(body)
        assert all(isinstance(entry.get("link", ""), str) for entry in feed.entries)
