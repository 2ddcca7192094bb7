"""Healing: a fault on one article of each mirrored host at t1, then one clean crawl. Does the
clean crawl store every gold article, although stop-at-known and 304 listings stay on?

Each round picks, for every host of the offline mirror, one t1 gold article and one fault
(503 burst, 429, time-out, reset, truncation with Content-Length, without it, chunked without
the last chunk, anti-bot interstitial), crawls t1 through the faulty mirror into a fresh SQLite
database, then crawls the healthy mirror once. The listings answer 304 and list only stored
articles by then: only the owed list brings the faulted articles back.

    .venv/bin/python -m bench heal            # 20 rounds
    .venv/bin/python -m bench.heal --rounds 5 --seed 7
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from crawler.urls import url_key
from monitor.crawling import CrawlOptions, run_crawl
from monitor.faults import load_fault_plan
from monitor.mirror import DEFAULT_MIRROR_PATH, MirrorServer
from storage import repository
from storage.db import init_db, make_engine, session_factory
from storage.models import Article

QUICK = os.environ.get("DTMON_BENCH_QUICK") == "1"
ROUNDS = 2 if QUICK else 20
SOURCES = ["vov", "hungyen", "baohungyen", "quangninh", "hagiang", "hue", "dongnai"]
# What the issue names, as mirror faults (monitor/faults.py). Each lasts beyond the retries.
FAULTS = {
    "503 burst": "5xx:9",
    "429": "429:9:1",
    "time-out": "timeout",
    "reset": "reset",
    "truncated, Content-Length": "truncate",
    "truncated, no Content-Length": "truncate:close",
    "truncated, chunked": "truncate:chunked",
    "interstitial": "interstitial",
}
# Short time-outs and back-off, so that the faults cost seconds; politeness off on 127.0.0.1.
FAST = {"DOWNLOAD_DELAY": "0", "AUTOTHROTTLE_ENABLED": "0", "DOWNLOAD_TIMEOUT": "1",
        "DTMON_RETRY_BACKOFF_BASE": "0.05", "DTMON_RETRY_AFTER_MAX": "5"}
# An article's own identifier in its URL: a GUID or a number of four digits or more.
_ARTICLE_ID = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}|\d{4,}")


@dataclass
class HealRound:
    """One round: the faults placed (article URL → fault) and what each crawl left."""

    placement: dict[str, str]
    gold: set[str]  # url keys of the t1 gold articles
    stored_after_faulty: set[str]
    owed_after_faulty: set[str]
    stored_after_clean: set[str]
    owed_after_clean: set[str]
    not_modified_in_clean: int

    @property
    def missing(self) -> set[str]:
        """Gold articles the clean crawl did not store."""
        return self.gold - self.stored_after_clean

    @property
    def healed(self) -> bool:
        return not self.missing and self.stored_after_clean <= self.gold


def t1_gold_by_host(sites: Path) -> dict[str, list[str]]:
    """The canonical URLs of the t1 gold articles, per host."""

    by_host: dict[str, list[str]] = {}
    for path in sorted((sites / "gold").glob("*.json")):
        item = json.loads(path.read_text("utf-8"))
        if item["snapshot"] == "t1":
            by_host.setdefault(item["host"], []).append(item["url"])
    return by_host


def fault_rule(url: str, fault: str) -> str:
    """A mirror fault rule hitting the article at ``url`` under any spelling of its path."""
    scheme, _, host = url.split("/")[:3]
    return f"{scheme}//{host}/*{_ARTICLE_ID.findall(url)[0]}*={fault}"


def heal_round(sites: Path, database_url: str, placement: dict[str, str]) -> HealRound:
    """A faulty t1 crawl with ``placement``, then a clean one, into ``database_url``."""
    engine = make_engine(database_url)
    init_db(engine)
    sessions = session_factory(engine)
    gold = {url_key(url) for urls in t1_gold_by_host(sites).values() for url in urls}
    plan = load_fault_plan(fault_rule(url, fault) for url, fault in placement.items())

    def crawl(mirror: MirrorServer) -> tuple[set[str], set[str]]:
        outcome = run_crawl(CrawlOptions(sources=SOURCES, via=mirror.url, trigger="bench",
                                         extra_settings=FAST), sessions, database_url)
        if outcome.status != "ok":
            raise RuntimeError(f"crawl {outcome.status}: see {outcome.log_path}")
        with sessions() as session:
            stored = set(session.scalars(select(Article.url_key)))
            owed = {owed.url_key for owed in repository.list_owed(session)}
        return stored, owed

    try:
        with MirrorServer(sites, snapshot="t1", faults=plan) as mirror:
            stored_faulty, owed_faulty = crawl(mirror)
        with MirrorServer(sites, snapshot="t1") as mirror:
            stored_clean, owed_clean = crawl(mirror)
            not_modified = sum(1 for r in mirror.requests if r.status == 304)
    finally:
        engine.dispose()
    return HealRound(placement, gold, stored_faulty, owed_faulty, stored_clean, owed_clean,
                     not_modified)


def random_placement(sites: Path, rng: random.Random) -> dict[str, str]:
    """One t1 gold article of each host, each with a fault drawn at random."""
    return {rng.choice(urls): rng.choice(list(FAULTS.values()))
            for _, urls in sorted(t1_gold_by_host(sites).items())}


def run(rounds: int = ROUNDS, seed: int | None = None, sites: Path = DEFAULT_MIRROR_PATH
        ) -> list[dict]:
    """``rounds`` random rounds: how many healed, and the placements of those that did not."""
    rng = random.Random(seed)
    healed, failures, started = 0, [], time.monotonic()
    not_modified: list[int] = []
    for number in range(rounds):
        placement = random_placement(sites, rng)
        with tempfile.TemporaryDirectory(prefix="dtmon-heal-") as folder:
            result = heal_round(sites, f"sqlite:///{Path(folder) / 'heal.db'}", placement)
        healed += result.healed
        not_modified.append(result.not_modified_in_clean)
        if not result.healed:
            failures.append(f"round {number}: missing {sorted(result.missing)} "
                            f"(faults {placement})")
    rows = [
        {"metric": "rounds healed by one clean crawl (random fault on one article per host)",
         "value": f"{healed} of {rounds}", "target": f"{rounds} of {rounds}"},
        {"metric": "304 answers to the clean crawl's conditional requests (fewest in a round)",
         "value": min(not_modified, default=0)},
        {"metric": "seconds per round (faulty crawl + clean crawl)",
         "value": (time.monotonic() - started) / max(rounds, 1), "unit": "s"},
    ]
    rows += [{"metric": "not healed", "value": failure} for failure in failures]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR_PATH)
    args = parser.parse_args()
    for row in run(args.rounds, args.seed, args.mirror):
        print(f"{row['metric']}: {row['value']}")


if __name__ == "__main__":
    main()
