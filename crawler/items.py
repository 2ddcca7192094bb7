"""Items yielded by dtmon's spiders."""

from __future__ import annotations

import scrapy


class ArticleItem(scrapy.Item):
    """An extracted article page, as handed to the storage pipeline.

    ``url`` is the canonical URL; ``urls`` every real URL that led to the page (the request
    URL, redirect sources, the final URL). URLs are always the site's real ones, never a
    mirror's.
    """

    source = scrapy.Field()  # registry name
    province = scrapy.Field()
    url = scrapy.Field()
    urls = scrapy.Field()
    found_on = scrapy.Field()  # the feed, sitemap or listing page that linked it
    title = scrapy.Field()
    text = scrapy.Field()
    published = scrapy.Field()  # ISO 8601 string or bare date, or None
    author = scrapy.Field()
    original_source = scrapy.Field()
    tags = scrapy.Field()
    language = scrapy.Field()
    raw_html = scrapy.Field()  # response body bytes, uncompressed
    analysis = scrapy.Field()  # what DTMON_ARTICLE_ANALYSIS computed from the text (or None)
    fetched_at = scrapy.Field()  # datetime, UTC
    etag = scrapy.Field()
    last_modified = scrapy.Field()
