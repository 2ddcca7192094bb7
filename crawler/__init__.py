"""dtmon's Scrapy project: spiders, items, middlewares, pipelines and extraction."""
