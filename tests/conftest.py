"""Shared pytest configuration: fixtures live in tests/fixtures/, one module per concern."""

pytest_plugins = [
    "tests.fixtures.shared_data",
    "tests.fixtures.database",
    "tests.fixtures.mirror",
    "tests.fixtures.crawled",
    "tests.fixtures.receivers",
]
