"""Shared pytest configuration. Fixtures that start real processes live in tests/fixtures/ and are
registered here so every test package (chain, payments, oracle, end-to-end) uses the same ones."""

pytest_plugins = [
    "tests.fixtures.anvil",
    "tests.fixtures.databases",
    "tests.fixtures.devnet",
]
