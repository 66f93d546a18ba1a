"""Serializers (json, msgpack, pickle) and exceptions as Celery stores them.

JSON goes through :mod:`kombu.utils.json` so that datetimes, Decimals, UUIDs and bytes
carry the same ``{"__type__", "__value__"}`` markers Celery writes and reads. Pickle
is refused unless its content type is explicitly accepted: unpickling is code
execution. Decoding looks the content type up in the ``accept`` set first.
"""

from __future__ import annotations

import bz2
import functools
import json
import lzma
import pickle
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kombu.utils import json as kombu_json

try:  # msgpack is optional
    import msgpack  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - depends on the environment
    msgpack = None

from celeriac.exceptions import ContentDisallowed, SerializationError, TaskError

JSON = "application/json"
MSGPACK = "application/x-msgpack"
PICKLE = "application/x-python-serialize"


@dataclass(frozen=True)
class Codec:
    """One serializer: its short name, MIME type, encoding and functions."""

    name: str
    content_type: str
    content_encoding: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


_kombu_encoder = kombu_json.JSONEncoder()
"""What ``kombu_json.dumps(value)`` builds on every call (``json.dumps(value, cls=JSONEncoder)``
with default options), built once: encoders keep no state between calls."""
_kombu_loads: Callable[[bytes | str], Any] = kombu_json.loads


def _json_dumps(value: Any) -> bytes:
    return _kombu_encoder.encode(value).encode("utf-8")


_TYPE_MARKER = "__type__"
_UNICODE_ESCAPE = "\\u"


def _json_loads(data: bytes) -> Any:
    """kombu's ``loads``, without its per-object hook when no object can be a type marker.

    kombu's hook only rewrites objects whose keys are exactly ``__type__`` and ``__value__``;
    text that contains no ``__type__`` (not even spelled with ``\\u`` escapes) has none, so
    the plain parser returns the same value about 1 µs faster per task message.
    """
    text = data.decode("utf-8")  # as kombu does: no UTF-16/32 detection, a BOM is an error
    if _TYPE_MARKER in text or _UNICODE_ESCAPE in text:
        return _kombu_loads(text)
    return json.loads(text)


def _msgpack_dumps(value: Any) -> bytes:
    if msgpack is None:
        raise SerializationError("the msgpack serializer needs the msgpack package: pip install msgpack")
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _msgpack_loads(data: bytes) -> Any:
    if msgpack is None:
        raise SerializationError("the msgpack serializer needs the msgpack package: pip install msgpack")
    return msgpack.unpackb(data, raw=False)


def _pickle_dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.DEFAULT_PROTOCOL)


def _pickle_loads(data: bytes) -> Any:
    return pickle.loads(data)  # only reached when pickle is accepted


CODECS: dict[str, Codec] = {
    "json": Codec("json", JSON, "utf-8", _json_dumps, _json_loads),
    "msgpack": Codec("msgpack", MSGPACK, "binary", _msgpack_dumps, _msgpack_loads),
    "pickle": Codec("pickle", PICKLE, "binary", _pickle_dumps, _pickle_loads),
}
_BY_CONTENT_TYPE = {codec.content_type: codec for codec in CODECS.values()}


def codec(name: str) -> Codec:
    """The codec for a serializer name (``json``) or content type (``application/json``)."""
    found = CODECS.get(name) or _BY_CONTENT_TYPE.get(name)
    if found is None:
        raise SerializationError(f"unknown serializer {name!r}; use one of {sorted(CODECS)}")
    return found


def accept_set(accept_content: list[str] | tuple[str, ...] | set[str] | frozenset[str]) -> frozenset[str]:
    """Normalise ``accept_content`` (names or MIME types) to a set of MIME types."""
    return _accept_set(tuple(accept_content))


@functools.lru_cache(maxsize=16)
def _accept_set(accept_content: tuple[str, ...]) -> frozenset[str]:
    # cached: the worker asks for every message it decodes
    return frozenset(codec(item).content_type if item in CODECS else item for item in accept_content)


def dumps(value: Any, serializer: str = "json") -> tuple[bytes, str, str]:
    """Serialize ``value``; returns ``(body, content_type, content_encoding)``."""
    chosen = codec(serializer)
    try:
        return chosen.dumps(value), chosen.content_type, chosen.content_encoding
    except (TypeError, ValueError, pickle.PicklingError) as exc:
        raise SerializationError(f"cannot encode {type(value).__name__} with {chosen.name}: {exc}") from exc


def loads(data: bytes | str, content_type: str, accept: frozenset[str] | set[str]) -> Any:
    """Deserialize ``data``; raises :class:`ContentDisallowed` if the type is not accepted."""
    if content_type not in accept:
        raise ContentDisallowed(f"content type {content_type!r} is not in accept_content {sorted(accept)}")
    chosen = _BY_CONTENT_TYPE.get(content_type)
    if chosen is None:
        raise ContentDisallowed(f"no serializer for content type {content_type!r}")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return chosen.loads(raw)


# Compression, kombu's way: the ``compression`` header names the MIME type. Note that
# kombu's "gzip" is zlib framing (RFC 1950), not RFC 1952 gzip.
_COMPRESSORS: dict[str, tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "application/x-gzip": ("application/x-gzip", zlib.compress, zlib.decompress),
    "application/x-bz2": ("application/x-bz2", bz2.compress, bz2.decompress),
    "application/x-lzma": ("application/x-lzma", lzma.compress, lzma.decompress),
}
_COMPRESSION_ALIASES = {
    "gzip": "application/x-gzip", "zlib": "application/x-gzip",
    "bzip2": "application/x-bz2", "bzip": "application/x-bz2",
    "lzma": "application/x-lzma", "xz": "application/x-lzma",
}  # fmt: skip


def compress(body: bytes, method: str) -> tuple[bytes, str]:
    """Compress ``body`` with ``gzip``/``zlib``, ``bzip2`` or ``lzma``; returns ``(body, header value)``."""
    found = _COMPRESSORS.get(_COMPRESSION_ALIASES.get(method, method))
    if found is None:
        raise SerializationError(f"unknown compression {method!r}; use gzip, bzip2 or lzma")
    mime, encode, _ = found
    return encode(body), mime


def decompress(body: bytes, content_type: str) -> bytes:
    """Undo :func:`compress` given the ``compression`` header value."""
    found = _COMPRESSORS.get(content_type)
    if found is None:
        raise SerializationError(f"unsupported compression {content_type!r}")
    return found[2](body)


# Our exceptions that have a Celery namesake are stored under celery.exceptions, so a
# Celery reader rebuilds its own type; and read back as ours when Celery stored them.
_CELERY_NAMESAKES = (
    "ChordError",
    "TaskRevokedError",
    "NotRegistered",
    "SoftTimeLimitExceeded",
    "TimeLimitExceeded",
    "WorkerLostError",
    "MaxRetriesExceededError",
    "Retry",
    "Reject",
    "Ignore",
)


def exception_to_dict(exc: BaseException) -> dict[str, Any]:
    """Celery's JSON form of an exception: ``exc_type``, ``exc_message`` (args), ``exc_module``."""
    cls = type(exc)
    module = cls.__module__
    if module == "celeriac.exceptions" and cls.__name__ in _CELERY_NAMESAKES:
        module = "celery.exceptions"
    if isinstance(exc, TaskError):
        return {"exc_type": exc.exc_type, "exc_message": list(exc.exc_args), "exc_module": exc.exc_module}
    return {
        "exc_type": getattr(cls, "__qualname__", cls.__name__),
        "exc_message": [_plain(arg) for arg in exc.args],
        "exc_module": module,
    }


def _plain(value: Any) -> Any:
    """An exception argument as is if JSON can carry it, else its repr."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _plain(item) for key, item in value.items()}
    return repr(value)


def _local_class(module: str | None, qualname: str) -> type[BaseException] | None:
    """The exception class named, if its module is already imported and it is one.

    Like Celery, never imports a module named by stored data and never returns
    anything that is not an exception class (a stored ``os.system`` stays harmless).
    """
    if module == "celery.exceptions" and qualname in _CELERY_NAMESAKES:
        module = "celeriac.exceptions"
    target: Any = sys.modules.get(module or "builtins")
    if target is None:
        return None
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    if isinstance(target, type) and issubclass(target, Exception):
        return target
    return None


def dict_to_exception(data: Any) -> BaseException:
    """Rebuild an exception from Celery's dict; :class:`TaskError` when the type is not local."""
    if isinstance(data, BaseException):
        return data
    if not isinstance(data, dict) or "exc_type" not in data:
        return TaskError("Exception", None, [data])
    exc_type = str(data["exc_type"])
    module = data.get("exc_module")
    message = data.get("exc_message", [])
    args = list(message) if isinstance(message, (list, tuple)) else [message]
    cls = _local_class(module, exc_type)
    if cls is None:
        return TaskError(exc_type, module, args)
    try:
        return cls(*args)
    except Exception:
        return TaskError(exc_type, module, args)
