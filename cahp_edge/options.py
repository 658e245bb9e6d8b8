"""The one way a stage states its options: a typed, torch-free model whose fields carry help and ranges.

    class DataOptions(StageOptions):
        max_length: int = opt(128, "Max tokens per example.", ge=8, le=4096)

From that one declaration come the stage's defaults, the CLI flags (:mod:`cahp_edge.cli.options`),
the `build.toml` keys (:class:`cahp_edge.build.options.BuildOptions` inherits the stage models), the
record in plans and manifests (``model_dump``) and the build cache key (``cache_key``). Ranges
are stated once, here, in the ``Field``; a bad value names the flag and its range in one line.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from cahp_edge.errors import UsageError


def opt(default: Any, help: str, *, cli: str | None = None, **constraints: Any) -> Any:
    """A stage option: its default, its help line, an optional CLI flag name, its range (ge/gt/le/lt)."""
    extra = {"cli": cli} if cli else None
    return Field(default=default, description=help, json_schema_extra=extra, **constraints)


class StageOptions(BaseModel):
    """Base of every stage's options: unknown keys are errors; bad values raise one-line UsageErrors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise options_error(e, type(self)) from None

    @classmethod
    def pick(cls, source: BaseModel) -> typing.Self:
        """This stage's options out of a larger model holding them (the build's options)."""
        return cls.model_validate(source.model_dump(include=set(cls.model_fields)))

    def cache_key(self) -> dict[str, Any]:
        """Every field, JSON-typed: what the build cache hashes (a new field is in the key by design)."""
        return self.model_dump(mode="json")


def flag(cls: type[BaseModel], name: str) -> str:
    """The command-line flag of a field: ``--max-drop`` for ``max_drop`` unless the field names its own."""
    extra = cls.model_fields[name].json_schema_extra
    given = extra.get("cli") if isinstance(extra, dict) else None
    return str(given) if given else "--" + name.replace("_", "-")


def choices(info: FieldInfo) -> tuple[str, ...] | None:
    """The allowed values of a Literal field (possibly optional), else None."""
    ann = info.annotation
    for arg in (ann, *typing.get_args(ann)):
        if typing.get_origin(arg) is typing.Literal:
            return tuple(str(a) for a in typing.get_args(arg))
    return None


def range_text(info: FieldInfo) -> str | None:
    """The field's numeric range as an interval, e.g. ``[0, 100]`` or ``(0, 1]``; None if unbounded."""
    lo = hi = None
    lo_open = hi_open = False
    for m in info.metadata:
        if getattr(m, "ge", None) is not None:
            lo = m.ge
        if getattr(m, "gt", None) is not None:
            lo, lo_open = m.gt, True
        if getattr(m, "le", None) is not None:
            hi = m.le
        if getattr(m, "lt", None) is not None:
            hi, hi_open = m.lt, True
    if lo is None and hi is None:
        return None
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if lo is None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def options_error(err: ValidationError, cls: type[BaseModel]) -> UsageError:
    """The first problem of a validation error as one line that names the flag, the value and the range."""
    e = err.errors()[0]
    name = str(e["loc"][0]) if e["loc"] else ""
    if name not in cls.model_fields:
        if e["type"] == "extra_forbidden":
            return UsageError(f"unknown option {name!r}", f"{cls.__name__} has no such field",
                              f"use one of {', '.join(cls.model_fields)}")
        # a model-level rule (e.g. two options that exclude each other) states the whole problem itself
        return UsageError(e["msg"].removeprefix("Value error, "))
    info, fl, got = cls.model_fields[name], flag(cls, name), e.get("input")
    allowed = choices(info)
    if allowed and e["type"] == "literal_error":
        noun = fl.removeprefix("--").replace("-", " ")
        return UsageError(f"unknown {noun} {got!r}", f"choose one of {', '.join(allowed)}",
                          f"pass e.g. {fl} {allowed[0]}")
    rng = range_text(info)
    if rng and e["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        where = f"in {rng}" if rng[0] in "[(" else rng  # an interval, or a bound such as "> 0"
        return UsageError(f"{fl} {got} is out of range", (info.description or "").rstrip("."),
                          f"pass a value {where}")
    return UsageError(f"{fl} {got!r} is invalid", e["msg"].removeprefix("Value error, "),
                      f"see `--help` for {fl}")
