"""From an agent config to a pipeline: streams, bundle loading (signature and drift reference
included), the model's options, the drift observer and the cloud fallback router.

The agent service builds one at start and at every reload; keeping the assembly here leaves
:mod:`edgefleet.agent.service` with the daemon's life cycle only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from edgefleet.agent.cloud_router import CloudRouter, Deliver, Publish, router_from_config
from edgefleet.agent.config import AgentConfig
from edgefleet.agent.drift_observer import DriftObserver
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.ota_slots import SlotStore
from edgefleet.agent.pipeline import Pipeline, PipelineSettings, StreamSpec
from edgefleet.agent.sources import create_source
from edgefleet.agent.store import Store
from edgefleet.runtime import Model
from edgefleet.runtime.bundle import Bundle, load_bundle
from edgefleet.runtime.bundle_signing import load_trusted_keys

__all__ = ["BuiltPipeline", "build_pipeline", "pipeline_settings"]


@dataclass(frozen=True)
class BuiltPipeline:
    pipeline: Pipeline
    drift: DriftObserver | None
    router: CloudRouter | None


def pipeline_settings(config: AgentConfig) -> PipelineSettings:
    batching = config.batching
    return PipelineSettings(
        max_batch_size=batching.max_batch_size,
        batch_timeout_s=batching.batch_timeout_s,
        buffer_capacity=batching.buffer_capacity,
        backpressure=batching.backpressure,
        store_outputs=config.store.store_raw_outputs,
        write_interval_s=config.store.commit_interval_s,
    )


def build_pipeline(
    config: AgentConfig,
    store: Store,
    counters: PipelineCounters,
    *,
    publish_live: Publish,
    deliver: Deliver,
) -> BuiltPipeline:
    """A pipeline for ``config`` writing to ``store`` (not started)."""
    model_cfg = config.model
    load_kwargs: dict[str, Any] = {
        "backend": None if model_cfg.backend == "auto" else model_cfg.backend,
        "providers": model_cfg.providers,
        "threads": model_cfg.threads,
        "nan_policy": model_cfg.nan_policy,
    }
    drift = DriftObserver(config.drift, store) if config.drift.enabled else None

    def open_bundle() -> Bundle:
        # The keys are re-read on every try, so a key file fixed on disk is picked up by the retry.
        trusted = load_trusted_keys(config.ota.trusted_keys) if config.ota.trusted_keys else []
        cache_dir = config.device.state_dir / "bundles"
        # The active OTA slot when there is one (edgefleet/agent/ota_slots.py), else the configured bundle.
        bundle = SlotStore(config.device.state_dir / "models").resolve(
            lambda: load_bundle(model_cfg.bundle, cache_dir=cache_dir, trusted_keys=trusted),
            trusted,
            config.device.state_dir / "models" / "incoming",
            on_event=lambda kind, message, data: store.add_event(kind, message, level="error", data=data),
        )
        if drift is not None:
            drift.attach(bundle)
        return bundle

    def open_model(bundle: Bundle) -> Model:
        return bundle.open_model(**load_kwargs)

    streams = [
        StreamSpec(name=src.name, make_source=functools.partial(create_source, src)) for src in config.sources
    ]
    router = router_from_config(config, publish=publish_live, deliver=deliver)
    pipeline = Pipeline(
        store=store,
        streams=streams,
        load_bundle=open_bundle,
        open_model=open_model,
        settings=pipeline_settings(config),
        counters=counters,
        observers=[drift] if drift is not None else [],
        router=router,
    )
    return BuiltPipeline(pipeline, drift, router)
