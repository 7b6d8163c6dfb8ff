"""Events: the wire schema, the durable journal, the ZeroMQ bus and the ``tail`` subscriber.

Inspectors hand :class:`~edge_inspector.values.Verdict` objects to the
:class:`EventBus`; it numbers them, writes them to the :class:`Journal` and only then publishes
them, so any subscriber can detect a gap by ``seq`` and fetch what it missed.
"""

from edge_inspector.events.bus import EventBus, check_endpoint_bindable
from edge_inspector.events.journal import Journal
from edge_inspector.events.schema import SCHEMA, decode, encode, topic_for

__all__ = ["SCHEMA", "EventBus", "Journal", "check_endpoint_bindable", "decode", "encode", "topic_for"]
