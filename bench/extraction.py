"""Extraction throughput: dtmon's ``extract_article`` against plain ``trafilatura.extract``.

Both run on the same synthetic article pages (built from every usable real page template, see
bench/synthetic.py), one core, best of three passes. ``extract_article`` decodes the bytes,
cleans the page, extracts text and metadata; the baseline is ``trafilatura.extract`` with its
default options on the same bytes.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trafilatura

from bench.synthetic import generate, templates
from crawler.extraction import extract_article
from monitor.mirror import DEFAULT_MIRROR_PATH

QUICK = os.environ.get("DTMON_BENCH_QUICK") == "1"
PAGES = 200 if QUICK else 2_000
TARGET_OVERHEAD = 0.25

Page = tuple[bytes, str]
Extractor = Callable[[Page], object]


def pages(count: int) -> list[Page]:
    """``count`` synthetic article pages (body, URL), every template used about equally."""
    hosts = len(templates(DEFAULT_MIRROR_PATH))
    with tempfile.TemporaryDirectory(prefix="dtmon-bench-") as folder:
        root = generate(DEFAULT_MIRROR_PATH, Path(folder), articles=count, hosts=hosts,
                        new_per_host=0).root
        return [(path.read_bytes(),
                 f"https://{path.parent.name}/tin-tuc/bai-viet-{path.stem[1:]}.html")
                for path in sorted(root.glob("*/a*.html"))]


def pages_per_second(extractors: list[Extractor], sample: list[Page]) -> list[float]:
    """Pages/s of each extractor over ``sample``: best of three passes, taken in turns so that
    a change in the machine's load weighs on all of them alike."""
    for extract in extractors:
        extract(sample[0])  # warm-up: lazy imports and caches
    best = [float("inf")] * len(extractors)
    for _ in range(3):
        for index, extract in enumerate(extractors):
            started = time.perf_counter()
            for page in sample:
                extract(page)
            best[index] = min(best[index], time.perf_counter() - started)
    return [len(sample) / seconds for seconds in best]


def run() -> list[dict]:
    """Pages/s of both extractors and the pipeline's overhead over plain trafilatura."""
    sample = pages(PAGES)
    ours, plain = pages_per_second([lambda page: extract_article(page[0], page[1]),
                                    lambda page: trafilatura.extract(page[0], url=page[1])],
                                   sample)
    return [
        {"metric": f"extract_article, {len(sample)} pages", "value": round(ours),
         "unit": "pages/s", "baseline": round(plain), "ratio": round(ours / plain, 2)},
        {"metric": "extraction overhead over plain trafilatura.extract",
         "value": round(100 * (plain / ours - 1)), "unit": "%",
         "target": f"≤ {TARGET_OVERHEAD:.0%}"},
    ]
