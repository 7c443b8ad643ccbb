"""MQTT sync between devices and the controller: protocol, codec, uplink drain, downlink.

The protocol is described normatively in docs/protocol.md.
"""

from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.config import SyncConfig, TlsConfig
from edgefleet.cloud_sync.protocol import SCHEMA_VERSION, Envelope, make_envelope
from edgefleet.cloud_sync.service import SyncService, SyncState, read_state_file

__all__ = [
    "SCHEMA_VERSION",
    "Envelope",
    "SyncConfig",
    "SyncService",
    "SyncState",
    "TlsConfig",
    "decode_message",
    "encode_message",
    "make_envelope",
    "read_state_file",
]
