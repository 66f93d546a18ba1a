"""Fixtures shared by every test tier.

``redis_server``: a real ``redis-server`` per test (function scope) on a free loopback port.
``control_plane``: the local Kubernetes control plane (session scope), see ``tests/k8s``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from servers import RedisServer, start_redis  # noqa: E402


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh redis-server for one test; stopped and its directory removed afterwards."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()
