"""pydantic validation errors as :class:`ConfigIssue` objects a user can act on.

Shared by every TOML configuration (agent, controller): each issue is keyed by the dotted path a
user would write (``sources[1].rate_hz``), shows the value found and says what was expected;
unknown keys come with a "did you mean" suggestion or the list of known keys; a value that came
from an environment override names its variable.
"""

from __future__ import annotations

import difflib
import os
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from edgefleet.errors import ConfigIssue

__all__ = ["MISSING", "Shown", "dotted_key", "issues_from"]


class Shown:
    """A value shown verbatim in an issue (no quotes), e.g. a TOML line or a shortened table."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Shown) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


MISSING = Shown("nothing")


def issues_from(
    exc: ValidationError,
    data: dict[str, Any],
    model: type[BaseModel],
    *,
    env_prefix: str | None = None,
    env_delimiter: str = "__",
    tag_noun: str = "type",
) -> list[ConfigIssue]:
    """Every error of ``exc`` (validating ``data`` as ``model``) as a :class:`ConfigIssue`.

    ``env_prefix``: the configuration reads ``<prefix><SECTION><delimiter><KEY>`` overrides from the
    environment; an issue whose variable is set says so. ``tag_noun`` names what a discriminated
    union's ``type`` key selects (e.g. "source type").
    """
    environment = {name.upper() for name in os.environ} if env_prefix else set()
    issues = []
    for error in exc.errors():
        path, raw, models = _walk(error["loc"], data, model)
        env_name = env_prefix + env_delimiter.join(str(p).upper() for p in path) if env_prefix else None
        from_env = env_name if env_name in environment else None
        issues.append(_issue(error, path, raw, models, from_env, tag_noun))
    return issues


def _shorten(value: object) -> object:
    if isinstance(value, (dict, list)):
        text = repr(value)
        return Shown(text if len(text) <= 80 else text[:77] + "...")
    return value


def _issue(
    error: Any,
    path: list[str | int],
    raw: Any,
    models: list[type[BaseModel] | None],
    env_name: str | None,
    tag_noun: str,
) -> ConfigIssue:
    key = dotted_key(path)
    kind = error["type"]
    message = str(error["msg"])
    if kind == "extra_forbidden":
        section = dotted_key(path[:-1]) or "the top level"
        name = str(path[-1])
        known = list(models[-1].model_fields) if models and models[-1] is not None else []
        close = difflib.get_close_matches(name, known, n=1)
        expected = f"unknown key {name!r} in [{section}]"
        expected += f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    elif kind == "string_pattern_mismatch":
        owner = models[-1] if models else None
        field = owner.model_fields.get(str(path[-1])) if owner is not None and path else None
        pattern = error.get("ctx", {}).get("pattern", "")
        expected = (
            field.description if field is not None and field.description else f"text matching {pattern}"
        )
    elif kind == "missing":
        expected = "a value: this key is required"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        key = f"{key}.type" if key else "type"
        tags = error.get("ctx", {}).get("expected_tags", "")
        expected = f"a {tag_noun}, one of {tags}"
        raw = raw.get("type", MISSING) if isinstance(raw, dict) else raw
    else:
        expected = message.removeprefix("Value error, ").removeprefix("Input should be ")
    if env_name is not None:
        expected += f" (set by environment variable {env_name})"
    value = MISSING if kind == "missing" else _shorten(raw if raw is not MISSING else error.get("input"))
    return ConfigIssue(key or "(top level)", value, expected)


def _walk(
    loc: tuple[Any, ...], data: Any, model: type[BaseModel]
) -> tuple[list[str | int], Any, list[type[BaseModel] | None]]:
    """Follow a pydantic ``loc`` through the raw data, dropping discriminator tags.

    Returns the user-facing path, the raw value there (MISSING if absent), and the model
    holding each step's key (used to suggest known keys and describe fields).
    """
    path: list[str | int] = []
    node: Any = data
    annotation: Any = model
    owners: list[type[BaseModel] | None] = []
    for part in loc:
        if isinstance(part, str) and isinstance(node, dict) and part not in node and node.get("type") == part:
            continue  # the union's tag pydantic inserts for the chosen arm
        owner = _pick_model(annotation, node)
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else MISSING
            annotation = _item_type(annotation)
            owner = None
        else:
            node = node.get(part, MISSING) if isinstance(node, dict) else MISSING
            field = owner.model_fields.get(part) if owner is not None else None
            annotation = field.annotation if field is not None else None
        path.append(part)
        owners.append(owner)
    return path, node, owners


def _item_type(annotation: Any) -> Any:
    """``X`` for ``list[X]`` (through Optional/Annotated), else None."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _item_type(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0]
    for arg in typing.get_args(annotation):
        found = _item_type(arg)
        if found is not None:
            return found
    return None


def _pick_model(annotation: Any, node: Any) -> type[BaseModel] | None:
    """The BaseModel inside ``annotation`` (through Optional, list, Annotated, unions)."""
    candidates: list[type[BaseModel]] = []

    def collect(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            candidates.append(tp)
            return
        if typing.get_origin(tp) is typing.Annotated:
            collect(typing.get_args(tp)[0])
            return
        if typing.get_origin(tp) is list:
            return  # a list's items are not the list's own keys
        for arg in typing.get_args(tp):
            collect(arg)

    collect(annotation)
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    tag = node.get("type") if isinstance(node, dict) else None
    for candidate in candidates:
        field = candidate.model_fields.get("type")
        if field is not None and field.default == tag:
            return candidate
    return None


def dotted_key(path: list[str | int]) -> str:
    """``["sources", 1, "rate_hz"]`` -> ``sources[1].rate_hz``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
