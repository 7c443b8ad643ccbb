"""Numbered schema migrations, one text for both databases.

``{real}``, ``{bigint}``, ``{id_pk}`` and ``{blob}`` are filled in per dialect. Migrations are append-only:
never edit a released one, add the next number.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

_V1 = """
CREATE TABLE devices (
    device_id TEXT PRIMARY KEY,
    first_seen {real} NOT NULL,
    last_seen {real} NOT NULL,
    online INTEGER NOT NULL DEFAULT 0,
    status_changed_at {real},
    agent_version TEXT,
    model_name TEXT,
    model_version TEXT,
    hardware TEXT NOT NULL DEFAULT '{{}}',
    drifted INTEGER NOT NULL DEFAULT 0,
    drift_at {real}
);
CREATE INDEX devices_last_seen ON devices (last_seen);
CREATE TABLE seen_messages (
    device_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    received_at {real} NOT NULL,
    PRIMARY KEY (device_id, message_id)
);
CREATE INDEX seen_messages_received ON seen_messages (received_at);
CREATE TABLE telemetry_raw (
    device_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    ts {real} NOT NULL,
    value {real} NOT NULL
);
CREATE INDEX telemetry_raw_lookup ON telemetry_raw (device_id, metric, ts);
CREATE INDEX telemetry_raw_ts ON telemetry_raw (ts);
CREATE TABLE telemetry_agg (
    device_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    resolution_s INTEGER NOT NULL,
    bucket_start {real} NOT NULL,
    count {bigint} NOT NULL,
    sum {real} NOT NULL,
    min {real} NOT NULL,
    max {real} NOT NULL,
    PRIMARY KEY (device_id, metric, resolution_s, bucket_start)
);
CREATE INDEX telemetry_agg_bucket ON telemetry_agg (resolution_s, bucket_start);
CREATE TABLE result_buckets (
    device_id TEXT NOT NULL,
    bucket_start {real} NOT NULL,
    label TEXT NOT NULL,
    model_version TEXT NOT NULL DEFAULT '',
    count {bigint} NOT NULL,
    cloud_count {bigint} NOT NULL,
    latency_sum_ms {real} NOT NULL,
    latency_count {bigint} NOT NULL,
    latency_max_ms {real} NOT NULL,
    PRIMARY KEY (device_id, bucket_start, label, model_version)
);
CREATE INDEX result_buckets_bucket ON result_buckets (bucket_start);
CREATE TABLE result_latency_bins (
    device_id TEXT NOT NULL,
    bucket_start {real} NOT NULL,
    bin INTEGER NOT NULL,
    count {bigint} NOT NULL,
    PRIMARY KEY (device_id, bucket_start, bin)
);
CREATE INDEX result_latency_bins_bucket ON result_latency_bins (bucket_start);
CREATE TABLE drift_reports (
    id {id_pk},
    device_id TEXT NOT NULL,
    ts {real} NOT NULL,
    received_at {real} NOT NULL,
    drifted INTEGER NOT NULL,
    score {real},
    details TEXT NOT NULL
);
CREATE INDEX drift_reports_device_ts ON drift_reports (device_id, ts);
CREATE TABLE events (
    id {id_pk},
    device_id TEXT NOT NULL,
    ts {real} NOT NULL,
    received_at {real} NOT NULL,
    kind TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX events_device_ts ON events (device_id, ts);
CREATE INDEX events_ts ON events (ts);
CREATE TABLE commands (
    command_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL,
    created_by TEXT,
    detail TEXT
);
CREATE INDEX commands_device ON commands (device_id, created_at);
CREATE TABLE api_tokens (
    token_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at {real} NOT NULL,
    last_used_at {real},
    revoked_at {real}
);
CREATE TABLE users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at {real} NOT NULL
);
CREATE TABLE sessions (
    session_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at {real} NOT NULL,
    expires_at {real} NOT NULL
);
CREATE TABLE controller_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_V2 = """
ALTER TABLE devices ADD COLUMN results_received {bigint} NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN outbox_floor {bigint};
CREATE TABLE delivery_ranges (
    device_id TEXT NOT NULL,
    first_id {bigint} NOT NULL,
    last_id {bigint} NOT NULL,
    PRIMARY KEY (device_id, first_id)
);
"""

# Fleet drift (issue 14): each version 2 report's raw counts, and its model, so reports merge by
# addition per model version.
_V3 = """
ALTER TABLE drift_reports ADD COLUMN model_name TEXT;
ALTER TABLE drift_reports ADD COLUMN model_version TEXT;
ALTER TABLE drift_reports ADD COLUMN counts TEXT;
CREATE INDEX drift_reports_version_ts ON drift_reports (model_version, ts);
CREATE INDEX drift_reports_ts ON drift_reports (ts);
"""

# Cloud fallback (issue 15): the windows devices sent to the cloud, with both answers.
_V4 = """
CREATE TABLE hard_examples (
    id {id_pk},
    device_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    answered_at {real} NOT NULL,
    stream TEXT NOT NULL,
    window_start {real} NOT NULL,
    window_end {real} NOT NULL,
    fallback_reason TEXT NOT NULL,
    edge_label TEXT,
    edge_score {real},
    cloud_label TEXT NOT NULL,
    cloud_score {real},
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    shape TEXT NOT NULL,
    data {blob} NOT NULL
);
CREATE INDEX hard_examples_answered ON hard_examples (answered_at);
CREATE INDEX hard_examples_device ON hard_examples (device_id, answered_at);
"""

# Cloud fallback on the dashboard (issue 15): stored results per fallback reason, and each
# device's last status.fallback (budget use, cloud latency).
_V6 = """
ALTER TABLE devices ADD COLUMN fallback TEXT;
ALTER TABLE devices ADD COLUMN fallback_at {real};
CREATE TABLE result_fallback_reasons (
    device_id TEXT NOT NULL,
    bucket_start {real} NOT NULL,
    reason TEXT NOT NULL,
    answered_by TEXT NOT NULL,
    count {bigint} NOT NULL,
    PRIMARY KEY (device_id, bucket_start, reason, answered_by)
);
CREATE INDEX result_fallback_reasons_bucket ON result_fallback_reasons (bucket_start);
"""

# OTA transfer (issue 16): bundles the controller hosts, and each device's last reported OTA state
# per offer, and the offers themselves (a controller restarted mid-transfer still answers the
# device's chunk requests). Campaign tables come in a later migration.
_V5 = """
CREATE TABLE ota_bundles (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes {bigint} NOT NULL,
    path TEXT NOT NULL,
    signed_key_id TEXT,
    created_at {real} NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE ota_device_state (
    device_id TEXT NOT NULL,
    offer_id TEXT NOT NULL,
    campaign_id TEXT,
    bundle_name TEXT,
    bundle_version TEXT,
    state TEXT NOT NULL,
    progress {real} NOT NULL DEFAULT 0,
    detail TEXT,
    metrics TEXT,
    updated_at {real} NOT NULL,
    PRIMARY KEY (device_id, offer_id)
);
CREATE INDEX ota_device_state_updated ON ota_device_state (device_id, updated_at);
CREATE TABLE ota_offers (
    offer_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    bundle_name TEXT NOT NULL,
    bundle_version TEXT NOT NULL,
    campaign_id TEXT,
    created_at {real} NOT NULL,
    expires_at {real}
);
"""

# OTA campaigns (issue 16, edgefleet/controller/ota_campaigns.py): device names and tags from the
# agents' [device] section (campaigns target tags), the campaigns and their devices.
_V7 = """
ALTER TABLE devices ADD COLUMN name TEXT;
ALTER TABLE devices ADD COLUMN tags TEXT;
CREATE TABLE ota_campaigns (
    campaign_id TEXT PRIMARY KEY,
    bundle_name TEXT NOT NULL,
    bundle_version TEXT NOT NULL,
    target TEXT NOT NULL,
    stages TEXT NOT NULL,
    shadow_s {real} NOT NULL DEFAULT 0,
    max_failures INTEGER NOT NULL DEFAULT 0,
    device_timeout_s {real} NOT NULL,
    status TEXT NOT NULL,
    stage INTEGER NOT NULL DEFAULT 0,
    detail TEXT,
    created_by TEXT,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE TABLE ota_campaign_devices (
    campaign_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    stage INTEGER NOT NULL,
    offer_id TEXT,
    offered_at {real},
    drifted_before INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    detail TEXT,
    rollback_command_id TEXT,
    PRIMARY KEY (campaign_id, device_id)
);
"""

# Cloud fallback (issue 15): late cloud answers the devices attached to results they stored
# earlier (uplink kind result_update). One row per device result: an update that arrives twice
# (under two message ids) is applied once.
_V8 = """
CREATE TABLE late_answers (
    device_id TEXT NOT NULL,
    result_id {bigint} NOT NULL,
    ts {real} NOT NULL,
    received_at {real} NOT NULL,
    stream TEXT NOT NULL,
    window_seq {bigint},
    edge_label TEXT NOT NULL,
    edge_model_version TEXT NOT NULL,
    fallback_reason TEXT,
    cloud_label TEXT NOT NULL,
    cloud_score {real},
    cloud_model_version TEXT NOT NULL,
    PRIMARY KEY (device_id, result_id)
);
CREATE INDEX late_answers_ts ON late_answers (ts);
"""

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "initial schema", _V1),
    (2, "delivery tracking: results received, outbox floor, stored message-id ranges per device", _V2),
    (3, "fleet drift: raw bin counts and model of each drift report", _V3),
    (4, "cloud fallback: hard examples (windows sent to the cloud with both answers)", _V4),
    (5, "OTA transfer: hosted bundles, offers, per-device OTA state per offer", _V5),
    (6, "cloud fallback: results per fallback reason, each device's last status.fallback", _V6),
    (7, "OTA campaigns: device names and tags, campaigns and their devices", _V7),
    (8, "cloud fallback: late cloud answers attached to device results", _V8),
)
"""(version, description, SQL template); statements are separated by ``;`` at line ends."""
