"""MQTT sync between devices and the controller: protocol, codec, uplink drain, downlink.

The protocol is described normatively in docs/protocol.md.
"""

from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import SCHEMA_VERSION, Envelope, make_envelope

__all__ = ["SCHEMA_VERSION", "Envelope", "decode_message", "encode_message", "make_envelope"]
