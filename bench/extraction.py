"""Extraction quality and throughput: dtmon's ``extract_article`` against plain
``trafilatura.extract``.

Quality: precision, recall, F1, accuracy and exceptions of both extractors on
``../shared/extraction-dev`` (990 real multilingual pages with gold snippets; the whole corpus
and its development / held-out parts, see bench/extraction_corpus.py) and on the mirror's 21
gold articles (body paragraphs must be found, boilerplate markers must not), in one run.
``--quick`` scores every fiftieth page of the corpus and counts no instructions.

Both run on the same synthetic article pages (built from every usable real page template, see
bench/synthetic.py), one core, best of three passes. ``extract_article`` decodes the bytes,
cleans the page, extracts text and metadata; the baseline is ``trafilatura.extract`` with its
default options on the same bytes.

Seconds on a shared VM drift (overheads of 9 % to 31 % seen in six runs of one day), so the
overhead is also counted in instructions: callgrind runs each extractor over every twentieth page
in its own process, and a third process that only warms both up gives the start-up to subtract.
Instruction counts repeat from run to run whatever else the machine does; that row is the one
set against the target (no row without valgrind; under ``--quick`` a row says it was not counted:
three Python processes under callgrind cost more than a smoke run should).
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trafilatura

from bench import extraction_corpus as corpus
from bench.synthetic import generate, templates
from crawler.extraction import extract_article
from monitor.mirror import DEFAULT_MIRROR_PATH

QUICK = os.environ.get("DTMON_BENCH_QUICK") == "1"
PAGES = 200 if QUICK else 2_000
TARGET_OVERHEAD = 0.25
COUNTED_EVERY = 20  # callgrind runs on one page in this many (100 of 2,000)
_COUNTED = re.compile(rb"Collected\s*:\s*(\d+)")

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


EXTRACTORS: dict[str, Extractor] = {
    "extract_article": lambda page: extract_article(page[0], page[1]),
    "trafilatura.extract": lambda page: trafilatura.extract(page[0], url=page[1]),
}


def instructions(sample: list[Page]) -> dict[str, int] | None:
    """Instructions each extractor executes over ``sample`` (callgrind, one process each, the
    warm-up process's count subtracted); None when valgrind is not installed."""
    if shutil.which("valgrind") is None:
        return None
    with tempfile.TemporaryDirectory(prefix="dtmon-bench-callgrind-") as folder:
        sample_file = Path(folder) / "pages.pickle"
        sample_file.write_bytes(pickle.dumps(sample))
        names = ["warm-up only", *EXTRACTORS]
        runs = [subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/{index}.out",
             sys.executable, "-m", "bench.extraction", name, str(sample_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for index, name in enumerate(names)]
        counts = [int(_COUNTED.search(run.communicate()[1]).group(1)) for run in runs]
    return {name: count - counts[0] for name, count in zip(names[1:], counts[1:], strict=True)}


def _count_one(name: str, sample_file: Path) -> None:
    """The process callgrind counts: warm both extractors up, then run ``name`` over the pages."""
    sample: list[Page] = pickle.loads(sample_file.read_bytes())
    for extract in EXTRACTORS.values():
        extract(sample[0])
    if name in EXTRACTORS:
        for page in sample:
            EXTRACTORS[name](page)


def plain_text(page: corpus.GoldPage) -> str | None:
    """Plain trafilatura as the corpus README measures it."""
    return trafilatura.extract(page.html, url=page.url, include_comments=False,
                               include_tables=True)


def dtmon_text(page: corpus.GoldPage) -> str:
    """dtmon's extraction of a gold page."""
    return extract_article(page.html, page.url, encoding=page.encoding).text


def quality_rows(name: str, ours: corpus.Score, plain: corpus.Score) -> list[dict]:
    """Precision, recall, F1, accuracy and exceptions of both extractors."""
    rows = [{"metric": f"{name} ({ours.pages} pages), extract_article {measure}",
             "value": f"{getattr(ours, measure):.3f}",
             "baseline": f"{getattr(plain, measure):.3f}",
             "ratio": f"{getattr(ours, measure) / (getattr(plain, measure) or 1):.3f}"}
            for measure in ("precision", "recall", "f1", "accuracy")]
    rows.append({"metric": f"{name}, exceptions", "value": ours.exceptions,
                 "baseline": plain.exceptions})
    return rows


def quality() -> list[dict]:
    """The quality rows: extraction-dev (all, development part, held-out part), mirror gold."""
    rows = []
    if dev_corpus := corpus.extraction_dev()[:: 50 if QUICK else 1]:
        parts = dict(zip(("development part", "held-out part"), corpus.split(dev_corpus),
                         strict=True))
        scores = {part: (corpus.score(dtmon_text, pages), corpus.score(plain_text, pages))
                  for part, pages in parts.items()}
        ours, plain = (sum((s[i] for s in scores.values()), corpus.Score()) for i in (0, 1))
        rows += quality_rows("extraction-dev", ours, plain)
        rows[2]["target"] = "≥ 0.94, P and R ≥ plain's"
        for part, (ours, plain) in scores.items():
            rows.append({"metric": f"extraction-dev {part} ({ours.pages} pages), "
                                   "extract_article P / R / F1",
                         "value": f"{ours.precision:.3f} / {ours.recall:.3f} / {ours.f1:.3f}",
                         "baseline": f"{plain.precision:.3f} / {plain.recall:.3f} / "
                                     f"{plain.f1:.3f}"})
    if gold := corpus.mirror_gold(DEFAULT_MIRROR_PATH):
        rows += quality_rows("mirror gold", corpus.score(dtmon_text, gold),
                             corpus.score(plain_text, gold))
    return rows


def run() -> list[dict]:
    """Quality on the gold corpora, pages/s of both extractors and the overhead."""
    rows = quality()
    sample = pages(PAGES)
    ours, plain = pages_per_second(list(EXTRACTORS.values()), sample)
    rows += [
        {"metric": f"extract_article, {len(sample)} pages", "value": round(ours),
         "unit": "pages/s", "baseline": round(plain), "ratio": round(ours / plain, 2)},
        {"metric": "extraction overhead over plain trafilatura.extract, in seconds",
         "value": round(100 * (plain / ours - 1)), "unit": "%"},
    ]
    if QUICK:
        return [*rows, {"metric": "extraction overhead, in instructions", "unit": "",
                        "value": "not counted under --quick"}]
    counted_sample = sample[::COUNTED_EVERY]
    counted = instructions(counted_sample)
    if counted is not None:
        rows.append({
            "metric": f"extraction overhead, in instructions ({len(counted_sample)} pages, "
                      "callgrind)",
            "value": round(100 * (counted["extract_article"] / counted["trafilatura.extract"] - 1),
                           1),
            "unit": "%", "baseline": f"{counted['trafilatura.extract'] / 1e6:,.0f} M",
            "target": f"≤ {TARGET_OVERHEAD:.0%}"})
    return rows


if __name__ == "__main__":
    _count_one(sys.argv[1], Path(sys.argv[2]))
