"""dtmon's spiders: ``news`` (crawler/spiders/news.py) crawls every source of the registry."""
