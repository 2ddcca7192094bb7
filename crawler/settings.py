"""Scrapy settings of dtmon's crawler (``scrapy crawl news`` reads these)."""

import crawler.urls as _urls

BOT_NAME = "dtmon"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

USER_AGENT = "dtmon/0.1 (+news monitoring of Vietnamese public portals)"
ROBOTSTXT_OBEY = True

# Politeness: a few requests at a time per host, adapted to how fast the host answers.
CONCURRENT_REQUESTS = 32
CONCURRENT_REQUESTS_PER_DOMAIN = 4
DOWNLOAD_DELAY = 0.25
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.5
AUTOTHROTTLE_MAX_DELAY = 30
AUTOTHROTTLE_TARGET_CONCURRENCY = 2.0
# Scrapy starts this many tasks for the output of every callback; an article page yields one
# item, stored synchronously, so the default 100 only costs a hundred idle tasks per page.
CONCURRENT_ITEMS = 8
RETRY_ENABLED = True
RETRY_TIMES = 3
RETRY_HTTP_CODES = [408, 429, 500, 502, 503, 504, 520, 521, 522, 524]

# Anti-bot interstitials are dropped after redirects and decompression (590), before retries.
DOWNLOADER_MIDDLEWARES = {"crawler.middlewares.InterstitialMiddleware": 580}
# Hostile web (crawler/safety.py): requests (redirects too) stay on their source's hosts, checked
# before robots.txt (100); retries wait (Retry-After, else backoff) in place of Scrapy's own.
DOWNLOADER_MIDDLEWARES |= {
    "crawler.safety.HostGuardMiddleware": 50,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawler.safety.BackoffRetryMiddleware": 550,
}
DTMON_RETRY_AFTER_MAX = 120  # seconds; a longer Retry-After is not retried within the crawl
DTMON_RETRY_BACKOFF_BASE = 1.0  # seconds before the first retry, doubled for each further one
DTMON_RETRY_BACKOFF_MAX = 30.0
REDIRECT_MAX_TIMES = 5
# Scrapy's own URL length cap (2,083) would drop longer links without a word: the spider
# refuses, and counts, the URLs no database column can hold (crawler.urls.MAX_URL_LENGTH).
URLLENGTH_LIMIT = _urls.MAX_URL_LENGTH
# Feeds, sitemaps and listings are requested conditionally (crawler/incremental.py).
SPIDER_MIDDLEWARES = {"crawler.incremental.ConditionalRequestMiddleware": 600}
# Sitemap index: read only the newest shards (feeds and listings cover the latest news).
DTMON_SITEMAP_MAX_SHARDS = 3
# Caps: a page is never larger than this, compressed or not (Scrapy's HttpCompressionMiddleware
# and read_sitemap stop inflating at DOWNLOAD_MAXSIZE), nor slower than DOWNLOAD_TIMEOUT.
DOWNLOAD_TIMEOUT = 30
DOWNLOAD_MAXSIZE = 20 * 1024 * 1024
DOWNLOAD_WARNSIZE = 5 * 1024 * 1024
# A body shorter than its Content-Length, or chunked without its last chunk, is an error
# (ResponseDataLossError, retried), never a page. One without a declared length that the server
# ended by closing the connection comes flagged "partial" and is checked by the spider
# (crawler/safety.py truncation_reason).
DOWNLOAD_FAIL_ON_DATALOSS = True

# Bounded work: at most this many articles requested per source and run (0: no cap); the rest
# are owed to the next runs, which start with them (crawler/spiders/news.py).
DTMON_MAX_ARTICLES_PER_SOURCE = 200
# Owed articles: fetched again at the next run, then after 15 min, 30 min, 1 h… (at most a
# day) from the last failure; given up (state gave_up, `dtmon pending`) after 8 failed fetches.
DTMON_OWED_MAX_ATTEMPTS = 8
DTMON_OWED_BACKOFF_SECONDS = 900

# Article pages are extracted in worker processes (crawler/extractors.py): -1 = one per core
# besides the event loop's, 0 = in the event loop. Each worker also runs the analysis named here
# on the text (topic result and dedup fingerprint), so that storing only writes.
DTMON_EXTRACT_WORKERS = -1
DTMON_ARTICLE_ANALYSIS = "monitor.analysis.analyse_article"

# Articles and run records go to the database (DTMON_DATABASE_URL, DTMON_RUN_ID, DTMON_REFRESH),
# through monitor's pipeline, named by its path: the crawler never imports monitor. Articles are
# stored by one writer thread in group transactions of at most DTMON_STORE_BATCH articles,
# committed at the latest DTMON_STORE_BATCH_MS after the first one arrived.
ITEM_PIPELINES = {"monitor.pipeline.StoragePipeline": 300}
DTMON_STORE_BATCH = 50
DTMON_STORE_BATCH_MS = 250
DTMON_DATABASE_URL = ""
DTMON_RUN_ID = 0
DTMON_REFRESH = False

# --via: send every request to a mirror server (see crawler/via.py); empty = the live web.
DTMON_VIA = ""
DOWNLOAD_HANDLERS = {
    "http": "crawler.via.ViaDownloadHandler",
    "https": "crawler.via.ViaDownloadHandler",
}

REQUEST_FINGERPRINTER_IMPLEMENTATION = "2.7"
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = "INFO"
