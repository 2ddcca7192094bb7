"""Shared pytest configuration: fixtures live in tests/fixtures/, one module per concern."""

import os

import pytest

from monitor.crawling import LOG_DIR_ENV

pytest_plugins = [
    "tests.fixtures.shared_data",
    "tests.fixtures.database",
    "tests.fixtures.mirror",
    "tests.fixtures.crawled",
    "tests.fixtures.receivers",
]


@pytest.fixture(autouse=True, scope="session")
def crawl_logs_outside_the_repository(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Test crawls log to a temporary folder, never into the repository's data/logs."""
    os.environ.setdefault(LOG_DIR_ENV, str(tmp_path_factory.mktemp("crawl-logs")))


@pytest.fixture(autouse=True, scope="session")
def default_database_outside_the_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The default database (the user's data folder, platformdirs: $XDG_DATA_HOME on Linux) is
    a temporary folder: a test that forgets DTMON_DATABASE_URL never touches the user's."""
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))


# The modules that take longest (seconds of test time in one run of the whole suite on the
# 2-core AMD machine, December 2026), longest first. ``make test`` hands whole modules to its
# workers in collection order (``--dist loadfile``); starting with the longest lets the short
# ones fill in around them, instead of one long module running alone at the end.
LONGEST_MODULES = (
    "test_cli_output.py",       # 283: 93 tests, each starting dtmon commands
    "test_owed.py",             # 231
    "test_daemon.py",           # 193
    "test_stopping.py",         # 193
    "test_family_crawl.py",     # 183
    "test_spider.py",           # 136
    "test_end_to_end.py",       # 111
    "test_extraction_dev.py",   # 97
    "test_api.py",              # 94
    "test_bench_smoke.py",      # 83
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest modules first (see LONGEST_MODULES); each module's order is kept."""
    rank = {name: index for index, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
