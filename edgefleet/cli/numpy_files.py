"""Say what a ``.npz`` / ``.npy`` file really is before numpy guesses.

Given a file that is neither a zip archive nor an ``.npy`` array, ``np.load`` falls back to
unpickling and, with ``allow_pickle=False``, reports "pickled (object) data": wrong for a text
or truncated file. This checks the format's magic bytes first and names what was found.
"""

from __future__ import annotations

from pathlib import Path

from edgefleet.errors import EdgefleetError

__all__ = ["check_numpy_file"]

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty archive
_NPY_MAGIC = b"\x93NUMPY"


def _describe(head: bytes) -> str:
    if not head:
        return "it is empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"it starts with the bytes {head[:8].hex(' ')}"
    first = text.splitlines()[0] if text.strip() else text
    return f"it looks like text, starting {first[:40]!r}"


def check_numpy_file(path: Path) -> None:
    """Raise :class:`EdgefleetError` unless ``path`` starts like the numpy format its suffix names."""
    suffix = path.suffix.lower()
    with path.open("rb") as handle:
        head = handle.read(64)
    if suffix == ".npz" and not head.startswith(_ZIP_MAGICS):
        raise EdgefleetError(
            f"{path} is not an .npz file (a zip archive written by numpy.savez): {_describe(head)}",
            hint="write it with numpy.savez(path, name=array), keyed by the model's input names",
        )
    if suffix == ".npy" and not head.startswith(_NPY_MAGIC):
        raise EdgefleetError(
            f"{path} is not an .npy file (written by numpy.save): {_describe(head)}",
            hint="write it with numpy.save(path, array)",
        )
