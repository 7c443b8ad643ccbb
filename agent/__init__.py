"""The device agent (``edgefleet.agent``): pipeline, model slot, sources, store, service."""

if __name__ != "edgefleet.agent":
    # With the repository root on sys.path this folder is also reachable as 'agent': two names
    # would load every module twice, as two module objects with their own state and classes.
    raise ImportError(
        f"this folder is the package edgefleet.agent; import it as edgefleet.agent, not as {__name__!r}"
    )
