"""Which extra a missing module belongs to, and the one-line error naming it."""

from __future__ import annotations

import pytest

from edgefleet.cli.extras import MissingExtraError, missing_extra_error, require_extra

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("uvicorn", "controller"),
        ("fastapi.responses", "controller"),
        ("psycopg", "controller"),
        ("amqtt.broker", "demo"),
    ],
)
def test_a_module_of_an_extra_gets_an_install_hint(module: str, extra: str) -> None:
    error = missing_extra_error(ModuleNotFoundError(f"No module named {module!r}", name=module), "`x`")
    assert error is not None
    assert str(error) == (
        f"`x` needs the '{extra}' extra (module {module.split('.')[0]!r} is not installed): "
        f"pip install 'edgefleet[{extra}]'"
    )
    assert "\n" not in str(error)


def test_any_other_missing_module_stays_a_bug() -> None:
    assert missing_extra_error(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None
    assert missing_extra_error(ModuleNotFoundError("no name")) is None


def test_require_extra_checks_the_named_modules() -> None:
    require_extra("controller", "`x`", ("json",))
    with pytest.raises(MissingExtraError, match=r"pip install 'edgefleet\[demo\]'"):
        require_extra("demo", "`x`", ("edgefleet_no_such_module",))
