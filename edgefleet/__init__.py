"""edgefleet: an edge inference runtime and fleet agent.

The public surface is small on purpose; most users meet edgefleet through its CLI
(``edgefleet --help``). Library users start from :func:`edgefleet.runtime.load_model`,
:func:`edgefleet.runtime.bundle.load_bundle` and the exceptions re-exported here.
"""

from edgefleet.errors import (
    BundleError,
    ConfigError,
    EdgefleetError,
    ModelError,
    ModelInputError,
    ModelLoadError,
    ProtocolError,
    StoreError,
)

__version__ = "0.1.0"

__all__ = [
    "BundleError",
    "ConfigError",
    "EdgefleetError",
    "ModelError",
    "ModelInputError",
    "ModelLoadError",
    "ProtocolError",
    "StoreError",
    "__version__",
]
