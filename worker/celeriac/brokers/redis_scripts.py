"""Lua scripts of the Redis broker; each one is a single atomic round trip.

Key shapes (all names carry kombu's ``global_keyprefix``, see :mod:`celeriac.keys`):

* ``<queue>`` / ``<queue>\\x06\\x16<step>``  LIST  envelopes; producers LPUSH, consumers RPOP
* ``unacked``        HASH  delivery_tag -> JSON ``[envelope, exchange, routing_key]``
* ``unacked_index``  ZSET  delivery_tag scored by delivery time (unix seconds, float)
* ``<queue>.dead``   LIST  dead-lettered envelopes (LPUSH, so RPOP reads oldest first)

The shapes of ``unacked`` and ``unacked_index`` are kombu's, so Celery's visibility
sweep restores what we abandon and ours restores what Celery abandons.
"""

from __future__ import annotations

_ENVELOPE_FIELDS = r"""
local function field(tbl, name)
  if type(tbl) == 'table' and type(tbl[name]) == 'string' then return tbl[name] end
  return nil
end

-- What an envelope says about itself: whether cjson decodes it to a table, its
-- properties.delivery_tag (nil unless a non-empty printable ASCII string: kombu's are uuid4
-- strings, and this keeps every tag valid UTF-8, read back unchanged as a Python str), and
-- its delivery_info exchange and routing key (nil unless strings).
local function envelope_fields(env)
  local ok, doc = pcall(cjson.decode, env)
  if not (ok and type(doc) == 'table') then return false, nil, nil, nil end
  local props = doc['properties']
  local tag = field(props, 'delivery_tag')
  if tag == '' or (tag and tag:find('[^ -~]')) then tag = nil end
  local info = type(props) == 'table' and props['delivery_info'] or nil
  return true, tag, field(info, 'exchange'), field(info, 'routing_key')
end
"""

FETCH = (
    _ENVELOPE_FIELDS
    + r"""
-- Pop up to ARGV[1] envelopes and record them as unacked, atomically, so no crash can
-- lose a message between taking it off its list and writing the unacked entry.
--   KEYS[1]      unacked        HASH  tag -> '[envelope, exchange, routing_key]'
--   KEYS[2]      unacked_index  ZSET  tag scored by ARGV[2]
--   KEYS[3..]    priority lists, step-major then queue-minor: for each priority step
--                (highest first) one list per queue, ARGV[3] queues per step.
--   ARGV[1] max messages; ARGV[2] now (unix seconds, float); ARGV[3] number of queues;
--   ARGV[4], ARGV[5] (optional) a list key and an envelope already popped by BRPOP, recorded first;
--   ARGV[6+i] the queue name of the i-th queue (fallback routing key).
-- Returns a flat array: list_key, envelope, meta per message. meta is '' when the envelope's
-- own tag, exchange and routing key (the last not empty) are what was recorded, which Python
-- reads from the envelope (or, if Python's json cannot read what cjson did, asks for with
-- ENVELOPE_META); otherwise meta is the JSON array [tag, exchange, routing_key] recorded.
local max = tonumber(ARGV[1])
local now = ARGV[2]
local nq = tonumber(ARGV[3])
local nlists = #KEYS - 2
local out = {}
local count = 0

local function record(list_key, env, qname)
  local ok, tag, ex, rk = envelope_fields(env)
  local own = tag ~= nil and ex ~= nil and rk ~= nil and rk ~= ''
  ex = ex or ''
  rk = rk or qname
  if tag == nil then
    local t = redis.call('TIME')
    tag = 'celeriac-' .. redis.sha1hex(env .. t[1] .. t[2] .. count)
  end
  -- an element that is not JSON is stored as a JSON string so the value stays parseable
  local stored = ok and env or cjson.encode(env)
  local ex_json, rk_json = cjson.encode(ex), cjson.encode(rk)
  redis.call('HSET', KEYS[1], tag, '[' .. stored .. ', ' .. ex_json .. ', ' .. rk_json .. ']')
  redis.call('ZADD', KEYS[2], now, tag)
  count = count + 1
  out[#out + 1] = list_key
  out[#out + 1] = env
  out[#out + 1] = own and '' or ('[' .. cjson.encode(tag) .. ', ' .. ex_json .. ', ' .. rk_json .. ']')
end

if ARGV[4] and ARGV[4] ~= '' then
  local qname = ARGV[6]
  for i = 1, nlists do
    if KEYS[2 + i] == ARGV[4] then qname = ARGV[6 + ((i - 1) % nq)] end
  end
  record(ARGV[4], ARGV[5], qname)
end

local steps = nlists / nq
for s = 0, steps - 1 do
  local live = {}
  for q = 1, nq do live[q] = true end
  local any = true
  while any and count < max do
    any = false
    for q = 1, nq do
      if count >= max then break end
      if live[q] then
        local key = KEYS[2 + s * nq + q]
        local env = redis.call('RPOP', key)
        if env then
          record(key, env, ARGV[5 + q])
          any = true
        else
          live[q] = false
        end
      end
    end
  end
end
return out
"""
)

SETTLE = r"""
-- Requeue or dead-letter one delivery, only if this consumer still owns it.
--   KEYS[1] unacked HASH; KEYS[2] unacked_index ZSET; KEYS[3] target LIST
--   ARGV[1] delivery tag; ARGV[2] envelope to push; ARGV[3] 'RPUSH' (head: consumed next,
--   kombu's restore) or 'LPUSH' (tail: a dead-letter queue, or kombu's reject+requeue)
-- If the unacked entry is already gone (acked, or restored by a visibility sweep of any
-- worker), nothing is pushed, so a message is never duplicated. Returns 1 if pushed.
local owned = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if owned == 1 then
  redis.call(ARGV[3], KEYS[3], ARGV[2])
  return 1
end
return 0
"""

CLAIM_RESTORE = r"""
-- Read the unacked entry of one timed-out tag for the visibility sweep.
--   KEYS[1] unacked HASH; KEYS[2] unacked_index ZSET; ARGV[1] tag
-- A tag in the index without an entry is dropped from the index (kombu does the same).
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return value
"""

ENVELOPE_META = (
    _ENVELOPE_FIELDS
    + r"""
-- The meta FETCH returned as '' for envelope ARGV[1]: the JSON array [tag, exchange,
-- routing_key] it recorded from the envelope's own fields. For the rare envelope that cjson
-- decodes and Python's json does not (numbers like 0x10 or 1., raw control characters in
-- strings, bytes that are not UTF-8, nesting past Python's recursion limit). No keys.
local ok, tag, ex, rk = envelope_fields(ARGV[1])
return '[' .. cjson.encode(tag or '') .. ', ' .. cjson.encode(ex or '') .. ', ' .. cjson.encode(rk or '') .. ']'
"""
)
