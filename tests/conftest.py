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
