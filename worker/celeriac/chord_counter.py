"""The Redis chord counter, compatible with Celery 5.7's (wire-protocol §3.6).

The producer deletes ``.c`` (a frozen chord may be re-applied) and writes the header size
to ``.s``. Each finished header member runs one Lua script: it records
``[1, tid, state, result]`` in the ``.j`` ZSET scored by its group index (once per
``tid:index``, the ``.d`` set filters redeliveries), refreshes expiries, and, when the
count reaches ``.s`` + ``.t``, claims the right to send the body with ``SET .c <token> NX``.
Only the claim winner reads the results and sends the body, then deletes the bookkeeping
and marks ``.c`` ``done`` so late duplicates do nothing. The keys, member JSON, scores,
claim and cleanup are Celery's, so a chord's header may be split between Celery workers
and ours in any mix. No ``celery.chord_unlock`` polling task is needed on Redis.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from celeriac import keys, states
from celeriac.exceptions import ChordError
from celeriac.serialization import dict_to_exception, exception_to_dict, loads

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.backend import RedisBackend
    from celeriac.signature import Signature

logger = logging.getLogger(__name__)

# KEYS: .j .t .s .d <group key> .c   ARGV: tid, member json, ordered(1/0), score, expires_s,
# group_expires_s, claim_expires_s, claim token.  Returns {count, size change, size, claimed}.
JOIN_SCRIPT = """
if redis.call('GET', KEYS[6]) == 'done' then return {-1, 0, 0, 0} end
local seen = ARGV[1] .. ':' .. ARGV[4]
if redis.call('SISMEMBER', KEYS[4], seen) == 0 then
  if ARGV[3] == '1' then redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
  else redis.call('RPUSH', KEYS[1], ARGV[2]) end
  redis.call('SADD', KEYS[4], seen)
end
local count
if ARGV[3] == '1' then count = redis.call('ZCOUNT', KEYS[1], '-inf', '+inf')
else count = redis.call('LLEN', KEYS[1]) end
local expires = tonumber(ARGV[5])
if expires > 0 then
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], expires) end
  if tonumber(ARGV[6]) > 0 then redis.call('EXPIRE', KEYS[5], ARGV[6]) end
end
local change = redis.call('GET', KEYS[2])
local size = redis.call('GET', KEYS[3])
local claimed = 0
if size and count == tonumber(size) + tonumber(change or 0) then
  if redis.call('SET', KEYS[6], ARGV[8], 'NX', 'EX', ARGV[7]) then claimed = 1 end
end
return {count, change, size, claimed}
"""

# KEYS: .c .j .t .s .d   ARGV: token, done_expires_s.  Only the claim holder cleans up.
CLEANUP_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], 'done', 'EX', ARGV[2]) end
return 1
"""

# KEYS: .c .s   ARGV: token, expires_s.  Keep (or retake an expired) claim before sending the body.
EXTEND_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if not holder and redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then return 1 end
end
return 0
"""

DONE_MIN_EXPIRES_S = 300
"""How long ``.c`` stays ``done`` at least, so late duplicates of header tasks are ignored."""



def set_chord_size(backend: RedisBackend, group_id: str, size: int) -> None:
    """The producer's step (Celery 5.7): ``DEL .c`` then ``SET .s <size> EX chord_expires``."""
    client = backend.client
    client.delete(keys.chord_key(group_id, "c", backend.prefix))
    client.set(keys.chord_key(group_id, "s", backend.prefix), size, ex=backend.expires_s or None)


def _chord_keys(backend: RedisBackend, group_id: str) -> dict[str, str]:
    return {suffix: keys.chord_key(group_id, suffix, backend.prefix) for suffix in "jtsdc"}


def on_chord_part_return(app: Celeriac, request: Any, state: str, result: Any) -> None:
    """Record one header member's outcome; the member completing the chord sends the body."""
    task_id, group_id = request.id, request.group
    if not task_id or not group_id or not request.chord:
        return
    backend = app.backend
    names = _chord_keys(backend, group_id)
    score = "+inf" if request.group_index is None else str(request.group_index)
    value = exception_to_dict(result) if isinstance(result, BaseException) else result
    member = backend.encode([1, task_id, state, value])  # type: ignore[arg-type]
    join_timeout_s = float(app.conf.result_chord_join_timeout or 5.0)
    claim_expires_s = max(5, int(join_timeout_s * 2))
    token = uuid.uuid4().hex
    expires_s = backend.expires_s or 0
    ordered = bool(backend.transport_options.get("result_chord_ordered", True))
    count, change, size, claimed = _run(
        backend, JOIN_SCRIPT,
        [names["j"], names["t"], names["s"], names["d"], keys.group_meta(group_id, backend.prefix), names["c"]],
        [task_id, member, 1 if ordered else 0, score, expires_s, expires_s, claim_expires_s, token],
    )  # fmt: skip
    if count == -1 or not size or not claimed:
        return
    total = int(size) + int(change or 0)
    if count != total:
        return
    from celeriac.signature import signature  # lazily: signature imports result, which imports us indirectly

    body = signature(request.chord, app)
    try:
        raw = backend.client.zrange(names["j"], 0, -1) if ordered else backend.client.lrange(names["j"], 0, total)
        values = [_unpack(backend, item) for item in raw]
    except ChordError as exc:
        logger.error("chord %s failed: %s", group_id, exc)
        try:
            chord_error(app, body, exc, request)
        finally:
            backend.client.delete(names["s"])  # a late copy of a header task must not fail it again
        return
    if not _run(backend, EXTEND_SCRIPT, [names["c"], names["s"]], [token, claim_expires_s * 2]):
        logger.warning("chord %s body not sent: the dispatch claim is no longer ours", group_id)
        return
    try:
        body.apply_async((values,), parent_id=request.id, root_id=request.root_id or request.id)
    except Exception as exc:
        logger.exception("chord %s: sending the body failed", group_id)
        chord_error(app, body, ChordError(f"Callback error: {exc!r}"), request)
    finally:
        done_expires_s = max(claim_expires_s * 2, DONE_MIN_EXPIRES_S)
        cleanup_keys = [names["c"], names["j"], names["t"], names["s"], names["d"]]
        if not _run(backend, CLEANUP_SCRIPT, cleanup_keys, [token, done_expires_s]):
            logger.warning("chord %s: claim lost before cleanup; its keys are left to expire", group_id)


def _run(backend: RedisBackend, script: str, script_keys: list[str], args: list[Any]) -> Any:
    """EVALSHA (redis-py loads the script again after NOSCRIPT, e.g. after a Redis restart)."""
    return backend.client.register_script(script)(keys=script_keys, args=args)


def _unpack(backend: RedisBackend, raw: bytes) -> Any:
    _, task_id, state, value = loads(raw, "application/json", backend.accept | {"application/json"})
    if state in states.EXCEPTION_STATES and value is not None:
        value = dict_to_exception(value)
    if state in states.PROPAGATE_STATES:
        raise ChordError(f"Dependency {task_id} raised {value!r}")
    return value


def chord_error(app: Celeriac, body: Signature, exc: BaseException, request: Any = None) -> None:
    """Fail the body: call its errbacks, store FAILURE on its id and on its chain's steps (Celery's way)."""
    from celeriac.canvas import group
    from celeriac.trace import call_errbacks  # lazily: trace imports this module

    if isinstance(body, group):
        for member in body.tasks:
            chord_error(app, member, exc, request)
        return
    body_id = body.id or body.options.setdefault("task_id", str(uuid.uuid4()))
    call_errbacks(app, body_id, body.name, body.options.get("link_error"), exc, None, request)
    app.backend.store_result(body_id, exc, states.FAILURE)
    for step in body.options.get("chain") or ():
        step_id = (step.get("options") or {}).get("task_id")
        if step_id:
            app.backend.store_result(step_id, exc, states.FAILURE)
