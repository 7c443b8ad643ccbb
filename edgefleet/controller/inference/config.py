"""``[inference]`` in controller.toml: the cloud inference workers that answer devices' fallback requests."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["InferenceConfig"]


class InferenceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="start the workers inside `edgefleet controller serve`")
    bundle: Path | None = Field(default=None, description="the cloud model bundle (directory or .tar)")
    workers: int = Field(
        default=1, ge=1, le=64, description="worker processes' threads, one MQTT client each"
    )
    max_batch_size: int = Field(default=32, ge=1, le=4096, description="requests per model call")
    max_wait_ms: float = Field(
        default=5.0, ge=0, le=10_000, description="how long the oldest pending request may wait for a batch"
    )
    threads: int = Field(default=1, ge=1, le=256, description="inference threads per worker")
    share_group: str = Field(
        default="edgefleet-inference",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="MQTT 5 shared-subscription group the workers split infer/request in",
    )
    max_request_bytes: int = Field(default=256 * 1024, ge=1024, description="larger requests are refused")
    usernames: list[str] = Field(
        default_factory=list,
        description="one MQTT user name per worker (empty: mqtt.username for all); needed where the broker"
        " makes the user name the client id (the shipped config): workers sharing one would replace each"
        " other and the controller's own connection",
    )
    password_env: str = Field(
        default="",
        description="environment variable with the password of `usernames` (empty: mqtt.password_env)",
    )
    keep_hard_examples: bool = Field(
        default=True,
        description="store each answered window with the edge's and the cloud's answers in the controller"
        " database (retention.hard_examples_s)",
    )

    @model_validator(mode="after")
    def _one_user_per_worker(self) -> InferenceConfig:
        if self.usernames and len(self.usernames) != self.workers:
            raise ValueError(
                f"inference.usernames names {len(self.usernames)} users for {self.workers} workers;"
                " name one per worker (or none to use mqtt.username)"
            )
        if len(set(self.usernames)) != len(self.usernames):
            raise ValueError("inference.usernames repeats a name; each worker needs its own")
        return self

    @model_validator(mode="after")
    def _needs_bundle(self) -> InferenceConfig:
        if self.enabled and self.bundle is None:
            raise ValueError(
                "inference.enabled is true but inference.bundle is not set; name the cloud bundle"
            )
        return self
