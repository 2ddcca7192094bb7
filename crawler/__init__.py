"""dtmon's Scrapy project: spiders, items, middlewares, discovery and extraction (its pool of
extraction processes included). The storing pipeline is monitor's (monitor/pipeline.py), named in
settings.py: the crawler never imports monitor."""
