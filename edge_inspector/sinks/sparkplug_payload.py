"""Sparkplug B payloads, encoded with protobuf from the published schema.

``sparkplug_b.proto`` (Eclipse Tahu, EPL-2.0) ships next to this module unchanged, together with
``sparkplug_b.desc``, the descriptor set ``protoc`` compiles from it
(``protoc --descriptor_set_out=sparkplug_b.desc sparkplug_b.proto``; a test checks that the two
agree).  The message class is built from the descriptor at run time in a private pool, so it
works with any protobuf runtime from 4.22 on and clashes with no other Sparkplug library.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent
PAYLOAD_TYPE = "org.eclipse.tahu.protobuf.Payload"

# Sparkplug B data types (the schema's comment table) used by this node
INT32, INT64, UINT64, DOUBLE, BOOLEAN, STRING = 3, 4, 8, 10, 11, 12
_VALUE_FIELD = {INT32: "int_value", INT64: "long_value", UINT64: "long_value", DOUBLE: "double_value",
                BOOLEAN: "boolean_value", STRING: "string_value"}

REBIRTH = "Node Control/Rebirth"


@lru_cache(maxsize=1)
def payload_class() -> Any:
    """The ``Payload`` message class, from the shipped descriptor set."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    files = descriptor_pb2.FileDescriptorSet.FromString((SCHEMA_DIR / "sparkplug_b.desc").read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(PAYLOAD_TYPE))


def now_ms() -> int:
    return int(time.time() * 1000)


def encode(seq: int, metrics: list[tuple[str, int, Any, int | None]], ts_ms: int | None = None) -> bytes:
    """A payload with ``metrics`` as ``(name, datatype, value, timestamp_ms or None)``."""
    payload = payload_class()(timestamp=ts_ms or now_ms(), seq=seq)
    for name, datatype, value, ts in metrics:
        m = payload.metrics.add()
        m.name = name
        m.datatype = datatype
        m.timestamp = ts or payload.timestamp
        if value is None:
            m.is_null = True
        elif datatype == INT32:
            m.int_value = int(value) & 0xFFFFFFFF  # Sparkplug carries signed ints in the unsigned field
        else:
            setattr(m, _VALUE_FIELD[datatype], value)
    return payload.SerializeToString()


def decode(data: bytes) -> dict[str, Any]:
    """``{"seq", "timestamp", "metrics": {name: value}}`` (for NCMD and for tests)."""
    payload = payload_class().FromString(data)
    metrics = {}
    for m in payload.metrics:
        kind = m.WhichOneof("value")
        metrics[m.name] = None if m.is_null or kind is None else getattr(m, kind)
    return {"seq": payload.seq, "timestamp": payload.timestamp, "metrics": metrics}
