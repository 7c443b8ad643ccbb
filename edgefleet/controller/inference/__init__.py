"""Cloud inference for the devices' fallback: workers that answer ``infer/request`` with the cloud bundle.

The workers themselves live in :mod:`edgefleet.controller.inference.worker` (imported on demand: the
controller's config loads this package and should not pull in MQTT and the model runtimes).
"""

from edgefleet.controller.inference.config import InferenceConfig

__all__ = ["InferenceConfig"]
