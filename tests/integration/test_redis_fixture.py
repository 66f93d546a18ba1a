"""The redis_server fixture runs a real redis-server."""

from __future__ import annotations

import pytest

from servers import RedisServer

pytestmark = pytest.mark.integration


def test_redis_answers_ping_and_delivers_a_pushed_item(redis_server: RedisServer) -> None:
    r = redis_server.client()
    assert r.ping() is True
    assert r.lpush("q", b"first", b"second") == 2
    assert r.brpop(["q"], timeout=1) == (b"q", b"first")
    assert r.info("server")["redis_version"].count(".") == 2


def test_redis_restart_keeps_the_port_so_clients_reconnect(redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.set("k", "v")
    port = redis_server.port
    redis_server.restart()
    assert redis_server.port == port
    assert r.ping() is True
    assert r.get("k") is None  # no persistence: a restart is a clean server
