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

if __name__ != "edgefleet.cloud_sync":
    # With the repository root on sys.path this folder is also reachable as 'cloud_sync': two names
    # would load every module twice, as two module objects with their own state and classes.
    # (Checked last, after the imports above, which name edgefleet.cloud_sync anyway.)
    raise ImportError(
        f"this folder is the package edgefleet.cloud_sync; import it as edgefleet.cloud_sync, "
        f"not as {__name__!r}"
    )
