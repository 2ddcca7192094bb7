"""`dtmon crawl` and `dtmon demo`."""


def crawl() -> None:
    """Crawl the registry's sources (placeholder)."""


def demo() -> None:
    """Crawl the offline mirror (placeholder)."""
