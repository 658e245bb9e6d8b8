"""Typer options derived from a stage's options model: the flags, types, help, choices and ranges are
the model's own, so a command cannot drift from the stage (or from `build.toml`).

    @app.command()
    @stage_options(data_opts=DataOptions, opts=PruneOptions)
    def prune(model: ..., data_opts: DataOptions, opts: PruneOptions) -> None: ...

Each parameter named in ``stage_options`` is replaced by one CLI option per field of its model; a
field that several models share (``seed``) becomes one option feeding all of them; a name the
command declares itself, or lists in ``exclude``, is not derived (the model keeps its default).
The command then receives validated model instances (a bad value is a one-line usage error
naming the flag).
With ``overrides=True`` every option defaults to None and the command receives a dict of the
options actually given (the build merges it over `build.toml`).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from cahp_edge.options import choices, flag, range_text


def _cli_type(info: FieldInfo) -> Any:
    """The type Typer parses: Literal choices as str (the model checks them), optionals kept optional."""
    ann = info.annotation
    args = typing.get_args(ann)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), ann) if optional else ann
    if typing.get_origin(base) is typing.Literal:
        base = str
    return base | None if optional else base


def help_text(info: FieldInfo) -> str:
    text = (info.description or "").rstrip(".")
    extra = [c for c in ("|".join(choices(info) or ()), range_text(info)) if c]
    return text + (f" ({'; '.join(extra)})" if extra else "") + "."


def option_param(cls: type[BaseModel], name: str, overrides: bool = False) -> inspect.Parameter:
    info = cls.model_fields[name]
    fl = flag(cls, name)
    typ = _cli_type(info)
    if typ is bool or typ == (bool | None):
        decl = f"{fl}/--no-{fl.removeprefix('--')}"
        typ = bool | None if overrides else bool
    else:
        decl = fl
        if overrides and type(None) not in typing.get_args(typ):
            typ = typ | None
    default = None if overrides else info.get_default(call_default_factory=True)
    text = help_text(info)
    if overrides:  # the option defaults to "not given" (build.toml or the model decide): say what applies
        model_default = info.get_default(call_default_factory=True)
        if model_default is not None and model_default != []:
            shown = str(model_default).lower() if isinstance(model_default, bool) else model_default
            text += f" Default: {shown}."  # (rich would take "[default: x]" for markup and drop it)
    option = typer.Option(decl, help=text, show_default=not overrides)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[typ, option])


def stage_options(*, overrides: bool = False, exclude: tuple[str, ...] = (),
                  **models: type[BaseModel]) -> Callable[[Callable], Callable]:
    """Replace each named parameter of the command by its model's fields as CLI options (see module doc)."""

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn, eval_str=True)
        taken = {n for n in sig.parameters if n not in models}
        fields: dict[str, inspect.Parameter] = {}
        params: list[inspect.Parameter] = []  # the command's own, with each model's fields in its place
        for n, p in sig.parameters.items():
            if n not in models:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
                continue
            for name in models[n].model_fields:
                if name not in exclude and name not in taken and name not in fields:
                    fields[name] = option_param(models[n], name, overrides)
                    params.append(fields[name])

        @functools.wraps(fn)
        def wrapper(**kw: Any) -> Any:
            values = {n: kw.pop(n) for n in fields}
            if overrides:
                given = {n: v for n, v in values.items() if v is not None}
                return fn(**kw, **{p: given for p in models})
            built = {p: cls(**{n: v for n, v in values.items() if n in cls.model_fields})
                     for p, cls in models.items()}
            return fn(**kw, **built)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        if sig.return_annotation is not inspect.Signature.empty:
            wrapper.__annotations__["return"] = sig.return_annotation
        return wrapper

    return deco
