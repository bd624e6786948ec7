"""Fixtures for the node's tests: a cluster of in-process nodes (see harness.py) for the unit tests;
one real network (anvil, payments service, 4 node processes; see dvp_world.py) shared by the
package's integration tests and stopped when the package is done."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oracle.dvp_world import DvpWorld, dvp_world
from tests.oracle.harness import Cluster


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="package")
def dvp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DvpWorld]:
    with dvp_world(tmp_path_factory.mktemp("dvp-world")) as world:
        yield world


@pytest.fixture
def healthy(dvp: DvpWorld) -> Iterator[DvpWorld]:
    """The shared network with four honest running nodes before a test, and again after it, pass or
    fail (a fault test's kills, pauses, proxy modes and Byzantine setting are undone)."""
    dvp.heal()
    try:
        yield dvp
    finally:
        dvp.heal()
