"""One options model per stage: the prune CLI, the build CLI, build.toml and the cache key derive from it.

Each test fails when a field is added to (or changed in) a stage's options model without reaching
one of the places derived from it.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic.fields import FieldInfo

from cahp_edge.build.options import BuildOptions, make_options
from cahp_edge.data.options import DataOptions
from cahp_edge.deploy.options import QuantizeOptions
from cahp_edge.errors import UsageError
from cahp_edge.lineage import StageRecord
from cahp_edge.options import choices, flag
from cahp_edge.prune.options import METHODS, CahpOptions, MethodChoice, MethodName, PruneOptions
from cahp_edge.targets.options import ValidateOptions
from cahp_edge.train.options import RecoverOptions

STAGE_MODELS = (DataOptions, PruneOptions, RecoverOptions, QuantizeOptions, ValidateOptions)


def _click_params(command_name: str) -> dict[str, object]:
    """The click parameters of one `cahp-edge` command, by parameter name."""
    import typer.main

    from cahp_edge import cli
    from cahp_edge.cli.app import app

    cli.register_commands()
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command_name].params}


def _same_field(a: FieldInfo, b: FieldInfo) -> bool:
    return (a.annotation == b.annotation and a.default == b.default and a.metadata == b.metadata
            and a.description == b.description)


def _other_value(info: FieldInfo):
    """A valid value different from the field's default (to prove the field reaches the cache key)."""
    allowed = choices(info) or info.examples
    if allowed:
        return next(c for c in allowed if c != info.default)
    types = set(typing.get_args(info.annotation)) | {info.annotation}
    if bool in types:
        return not info.default
    if int in types:
        return 2 if info.default in (None, 1) else info.default + 1
    if float in types:
        return 0.5 if info.default in (None, 1.0) else (info.default + 0.25 if info.default < 0.5 else 0.25)
    if str in types:
        return "text"
    raise AssertionError(f"no alternative value for {info}")


@pytest.mark.parametrize("model", STAGE_MODELS, ids=lambda m: m.__name__)
def test_build_options_hold_every_stage_field_unchanged(model):
    for name, info in model.model_fields.items():
        assert name in BuildOptions.model_fields, f"{model.__name__}.{name} is not a build option"
        assert _same_field(info, BuildOptions.model_fields[name]), f"{name} differs in BuildOptions"


def test_fields_shared_by_stages_are_one_definition():
    seen: dict[str, FieldInfo] = {}
    for model in STAGE_MODELS:
        for name, info in model.model_fields.items():
            if name in seen:
                assert _same_field(seen[name], info), f"{name} is defined twice, differently"
            seen[name] = info


@pytest.mark.parametrize("model", (DataOptions, PruneOptions), ids=lambda m: m.__name__)
def test_prune_cli_option_per_field_with_the_models_default(model):
    params = _click_params("prune")
    for name, info in model.model_fields.items():
        assert name in params, f"`cahp-edge prune` has no option for {model.__name__}.{name}"
        p = params[name]
        assert flag(model, name) in p.opts, (name, p.opts)
        assert p.default == info.default, (name, p.default, info.default)
        allowed = choices(info)
        if allowed:
            assert all(c in (p.help or "") for c in allowed), f"--help of {name} does not list its choices"


@pytest.mark.parametrize("model", STAGE_MODELS, ids=lambda m: m.__name__)
def test_build_cli_option_per_stage_field_defaulting_to_the_config(model):
    params = _click_params("build")
    for name in model.model_fields:
        if name == "benchmark":  # a table of its own in build.toml; `--runs` on the command line
            assert "runs" in params
            continue
        assert name in params, f"`cahp-edge build` has no option for {model.__name__}.{name}"
        assert flag(model, name) in params[name].opts[0] or flag(model, name) in params[name].opts
        assert params[name].default is None  # not given: build.toml or the model's default applies


def test_every_build_option_is_a_build_toml_key(tmp_path):
    for name, info in BuildOptions.model_fields.items():
        if name in ("model", "data"):
            continue
        value = {"benchmark": {"runs": 3}, "targets": ["host"], "eval": "dev.tsv", "out": "o",
                 "name": "n"}.get(name)
        if value is None:
            value = _other_value(info)
        text = f"model = 'm'\ndata = 'd'\n{name} = {_toml(value)}\n"
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(text)
        got = make_options({}, cfg)
        if name == "benchmark":
            assert got.benchmark.runs == 3
        else:
            assert getattr(got, name) == value, name


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f"'{v}'"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)


class _Recorded(Exception):
    pass


class _KeyCache:
    """Stands in for BuildCache: records each stage's inputs, runs nothing, stops after ``last``."""

    def __init__(self, last: str) -> None:
        self.last, self.inputs = last, {}

    def run(self, stage, inputs, fn, force=False):
        from cahp_edge.build.cache import stage_key

        self.inputs[stage] = (stage_key(stage, inputs), inputs)
        if stage == self.last:
            raise _Recorded
        return StageRecord(stage, "k", Path("/nonexistent"), "t" + stage)


def _stage_key(stage: str, **changes) -> str:
    from cahp_edge.build import pipeline

    opts = BuildOptions.model_validate({"model": "m", "data": "d", **changes})
    src = pipeline.Source(Path("m"), "ckpt", "tok", {0: "a", 1: "b"}, "train-hash", None)
    cache = _KeyCache(stage)
    with pytest.raises(_Recorded):
        pipeline.build_locked(opts, [], cache, False, pipeline.Events(), src=src)
    return cache.inputs[stage][0]


@pytest.mark.parametrize("model", (DataOptions, PruneOptions), ids=lambda m: m.__name__)
def test_every_prune_stage_option_changes_the_prune_cache_key(model):
    base = _stage_key("prune")
    for name, info in model.model_fields.items():
        changed = _stage_key("prune", **{name: _other_value(info)})
        assert changed != base, f"{model.__name__}.{name} does not reach the prune cache key"


def test_every_recover_option_changes_the_recover_cache_key():
    base = _stage_key("recover")
    for name, info in RecoverOptions.model_fields.items():
        if name == "recover_epochs":
            changed = _stage_key("recover", recover_epochs=2.0)
        else:
            changed = _stage_key("recover", **{name: _other_value(info)})
        assert changed != base, f"RecoverOptions.{name} does not reach the recover cache key"


def test_max_drop_means_points_in_prune_and_build(monkeypatch, tmp_path):
    """`--max-drop 1.0` is one accuracy point for both commands (build refused it as a fraction before)."""
    from cahp_edge import cli
    from cahp_edge.build import pipeline

    seen = {}

    def fake_build(opts, force=False, events=None):
        seen["opts"] = opts
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "build", fake_build)
    with pytest.raises(SystemExit):
        cli.main(["build", "--model", "m", "--data", "d", "--target", "host", "--out", str(tmp_path / "o"),
                  "--max-drop", "1.0", "--salience", "fisher"])
    assert PruneOptions.pick(seen["opts"]).max_drop == 1.0 == PruneOptions(max_drop=1.0).max_drop
    assert seen["opts"].salience_kind == "fisher"
    with pytest.raises(UsageError, match=r"--max-drop 101.0 is out of range.*\[0, 100\]"):
        PruneOptions(max_drop=101.0)


@pytest.mark.parametrize("value", ["0", "0.5", "3", "7.25", "100"])
def test_max_drop_values_are_the_same_in_prune_and_build(monkeypatch, tmp_path, value):
    """The same --max-drop strings parse to the same points in both commands, and the default (no flag)
    is the same documented guard; the guard is one knee computation for both (select_heads)."""
    from cahp_edge import cli
    from cahp_edge.build import pipeline
    from cahp_edge.cli import prune as prune_cli
    from cahp_edge.prune import select
    from cahp_edge.prune.options import DEFAULT_MAX_DROP, DEFAULT_MAX_DROP_RECONSTRUCTED

    seen = {}

    def fake_build(opts, force=False, events=None):
        seen["build"] = PruneOptions.pick(opts).max_drop
        raise KeyboardInterrupt

    def fake_check(options, n):
        seen["prune"] = options.max_drop
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "build", fake_build)
    monkeypatch.setattr(prune_cli, "_load", lambda *a: (SimpleNamespace(heads_per_layer=[12] * 6), None))
    monkeypatch.setattr(select, "check_options", fake_check)
    # no flag: the documented guard of each kind of plan (heads: before recovery; heads + neurons: after
    # the re-fit)
    for units, default in (("heads", DEFAULT_MAX_DROP), ("heads+neurons", DEFAULT_MAX_DROP_RECONSTRUCTED)):
        for argv in (["--max-drop", value], []):
            seen.clear()
            for cmd in (["build", "--target", "host"], ["prune"]):
                with pytest.raises(SystemExit):
                    cli.main([*cmd, "--model", "m", "--data", "d", "--out", str(tmp_path / "o"),
                              "--units", units, *argv])
            assert seen["build"] == seen["prune"] == (float(value) if argv else default)
            kw = {"units": units, **({"max_drop": value} if argv else {})}
            assert PruneOptions(**kw).max_drop == seen["build"]


def test_method_registry_and_its_options():
    assert set(typing.get_args(MethodName)) == set(METHODS)
    assert set(typing.get_args(MethodChoice)) == {"auto", *METHODS}  # the flag's choices
    for m in METHODS.values():
        selector = m.load()
        params = inspect.signature(selector).parameters
        if m.options is not None:
            assert issubclass(PruneOptions, m.options), f"PruneOptions lacks {m.name}'s options"
            missing = set(m.options.model_fields) - set(params)
            assert not missing, f"{m.name}'s selector takes no {missing}"
            # the selector's own defaults are the options model's (one source of defaults)
            for name, info in m.options.model_fields.items():
                assert params[name].default == info.default, (m.name, name)
    assert PruneOptions(method="michel").method_options() == {}
    agg = PruneOptions(method="cahp", clustering="agglomerative")
    assert agg.method_options()["clustering"] == "agglomerative"
    assert set(PruneOptions(units="heads").method_options()) == set(CahpOptions.model_fields)  # auto: cahp
    assert PruneOptions().method == "fisher" and PruneOptions().method_options() == {}  # heads + neurons


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"method": "bogus"}, "unknown method 'bogus'"),
        ({"salience_kind": "x"}, "unknown salience 'x'"),
        ({"keep_ratio": 0.0}, "--keep-ratio 0.0 is out of range"),
        ({"round_fraction": 0.0}, "--round-fraction 0.0 is out of range"),
        ({"degree": 11}, "--degree 11 is out of range"),
        ({"heads": 3, "keep_ratio": 0.5}, "--heads and --keep-ratio both given"),
        ({"nope": 1}, "unknown option 'nope'"),
    ],
)
def test_bad_stage_options_are_one_line_usage_errors(kw, needle):
    with pytest.raises(UsageError) as e:
        PruneOptions(**kw)
    assert needle in e.value.line() and "\n" not in e.value.line()
    assert e.value.exit_code == 2


@pytest.mark.parametrize(("command", "skip"), [("recover", ()), ("finetune", ("alpha", "temperature"))])
def test_training_commands_take_the_loop_and_data_options(command, skip):
    """`finetune` and `recover` read the same LoopOptions / DataOptions fields as the build's recovery."""
    from cahp_edge.train.options import LoopOptions

    params = _click_params(command)
    for model in (LoopOptions, DataOptions):
        for name, info in model.model_fields.items():
            if name in skip or name in ("calib_size", "select_size"):
                assert name not in params
                continue
            assert name in params and flag(model, name) in params[name].opts, (command, name)
            assert params[name].default == info.default, (command, name)
    assert issubclass(RecoverOptions, LoopOptions)  # the build's recovery stage has the same knobs


def test_learning_rate_default_is_stated_once():
    from cahp_edge.train.loop import TrainConfig
    from cahp_edge.train.options import FINETUNE_LR, RECOVER_LR, LoopOptions

    d, loop = DataOptions(), LoopOptions()
    assert TrainConfig.from_options(d, loop, 1.0, recovering=True).lr == RECOVER_LR
    assert TrainConfig.from_options(d, loop, 1.0, recovering=False).lr == FINETUNE_LR
    assert TrainConfig.from_options(d, LoopOptions(learning_rate=1e-4), 1.0, recovering=True).lr == 1e-4
    with pytest.raises(UsageError, match=r"--lr -1\.0 is out of range"):
        TrainConfig(lr=-1.0).check()
