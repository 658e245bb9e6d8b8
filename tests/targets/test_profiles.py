"""Target profiles: every shipped one loads; bad profiles are rejected naming the key; host detection."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cahp_edge.errors import TargetError
from cahp_edge.runtime.sysinfo import read_cpuinfo
from cahp_edge.targets.profile import list_targets, load_target, parse_target, targets_dir

REPO = Path(__file__).resolve().parents[2]
SHIPPED = {"host", "x86-64-avx2", "x86-64-avx512-vnni", "rpi4-arm64", "rpi5-arm64", "android-arm64"}


def test_shipped_names_are_the_repo_files():
    assert set(list_targets()) == SHIPPED
    # the package-data folder is the repo's targets/ (a symlink in a checkout, a copy when installed)
    shipped = {p.name for p in targets_dir().glob("*.toml")}
    assert shipped == {p.name for p in (REPO / "targets").glob("*.toml")}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_profile_loads(name):
    t = load_target(name)
    assert t.name == name
    assert t.execution_providers[-1] == "CPUExecutionProvider"
    assert t.quantization.why.strip()
    assert t.benchmark.runs >= 1 and t.budgets.p90_latency_ms > 0
    # every [quantization] table carries a comment saying why, next to the settings
    text = (REPO / "targets" / f"{name}.toml").read_text()
    assert "# Why:" in text or name == "host"


def test_profiles_encode_the_hardware_differences():
    pi4, pi5, android = load_target("rpi4-arm64"), load_target("rpi5-arm64"), load_target("android-arm64")
    assert (pi4.cpu, pi5.cpu) == ("cortex-a72", "cortex-a76")
    assert "asimddp" not in pi4.isa_features and "asimddp" in pi5.isa_features
    assert "ort" in android.formats
    assert android.execution_providers == ["XnnpackExecutionProvider", "NnapiExecutionProvider",
                                           "CPUExecutionProvider"]
    avx2, vnni = load_target("x86-64-avx2"), load_target("x86-64-avx512-vnni")
    assert avx2.quantization.reduce_range is True and vnni.quantization.reduce_range is False
    for t in (avx2, vnni, pi4, pi5):
        assert (t.quantization.activation_type, t.quantization.weight_type) == ("uint8", "int8")


def _raw(name="rpi4-arm64"):
    return tomllib.loads((REPO / "targets" / f"{name}.toml").read_text())


def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "t.toml"
    p.write_text(text)
    return p


BASE = (REPO / "targets" / "rpi4-arm64.toml").read_text()


@pytest.mark.parametrize(("edit", "needle"), [
    (("[budgets]\n", "[budgets]\nmax_latency = 3.0\n"), "unknown key 'budgets.max_latency'"),
    (("name = ", "colour = \"red\"\nname = "), "unknown key 'colour'"),
    (("threads = 4", "threads = \"four\""), "key 'threads'"),
    (("threads = 4", "threads = 4.0"), "key 'threads'"),
    (("per_channel = true", "per_channel = \"yes\""), "key 'quantization.per_channel'"),
    (("runs = 200", "runs = 0"), "key 'benchmark.runs'"),
    (("p90_latency_ms = 250.0", "p90_latency_ms = -1.0"), "key 'budgets.p90_latency_ms'"),
    (("max_accuracy_drop = 0.015", "max_accuracy_drop = 1.5"), "key 'budgets.max_accuracy_drop'"),
    (("arch = \"aarch64\"", "arch = \"armv7\""), "key 'arch'"),
    (("activation_type = \"uint8\"", "activation_type = \"int8\""), "activation_type"),
    (("providers = [\"CPUExecutionProvider\"]", "providers = [\"NnapiExecutionProvider\"]"),
     "execution_providers"),
    (("opset = 17\n", ""), "missing key 'opset'"),
    (("opset = 17\n", "opset = 17\ndisabled_optimizers = [\"skip layer norm\"]\n"),
     "key 'disabled_optimizers"),
    (("opset = 17\n", "opset = 17\ndisabled_optimizers = \"SkipLayerNormFusion\"\n"),
     "key 'disabled_optimizers'"),
])
def test_bad_profile_is_rejected_naming_the_key(tmp_path, edit, needle):
    assert edit[0] in BASE
    p = _write(tmp_path, BASE.replace(edit[0], edit[1], 1))
    with pytest.raises(TargetError) as e:
        load_target(p)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and str(p) in msg


def test_malformed_toml(tmp_path):
    with pytest.raises(TargetError, match="not valid TOML"):
        load_target(_write(tmp_path, "name = [unclosed\n"))


def test_unknown_name_lists_known_ones():
    with pytest.raises(TargetError) as e:
        load_target("rpi3")
    assert "unknown target 'rpi3'" in str(e.value)
    for n in SHIPPED:
        assert n in str(e.value)


def test_missing_path(tmp_path):
    with pytest.raises(TargetError, match="not found"):
        load_target(tmp_path / "nope.toml")


@pytest.mark.parametrize(("machine", "flags", "reduce_range", "why"), [
    ("x86_64", ["sse4_2", "avx", "avx2", "fma"], True, "VPMADDUBSW"),
    ("x86_64", ["avx2", "avx512f", "avx512_vnni"], False, "AVX-512 VNNI"),
    ("x86_64", ["avx2", "avx_vnni"], False, "AVX-VNNI"),
    ("aarch64", ["fp", "asimd", "asimddp"], False, "ARM64"),
    ("aarch64", ["fp", "asimd"], False, "ARM64"),
])
def test_host_picks_recipe_from_detected_features(machine, flags, reduce_range, why):
    t = parse_target(_raw("host"), "host.toml", cpuinfo=("Some CPU", flags), machine=machine)
    assert t.arch == machine and t.cpu == "Some CPU"
    assert set(t.isa_features) <= set(flags)
    assert t.quantization.reduce_range is reduce_range
    assert why in t.quantization.why


def test_host_on_this_machine():
    t = load_target("host")
    _, flags = read_cpuinfo()
    assert set(t.isa_features) <= set(flags)


def test_recipes_without_fallback_are_an_error():
    raw = _raw("host")
    raw["recipes"] = [r for r in raw["recipes"] if r.get("requires")]
    with pytest.raises(TargetError, match="recipes: none matches"):
        parse_target(raw, "host.toml", cpuinfo=("cpu", ["sse2"]), machine="x86_64")


def test_detect_profile_may_not_also_set_arch():
    raw = _raw("host") | {"arch": "aarch64"}
    with pytest.raises(TargetError, match="arch: set by detection"):
        parse_target(raw, "host.toml", cpuinfo=("cpu", []), machine="x86_64")


def test_arm_cpuinfo_is_parsed(tmp_path):
    p = tmp_path / "cpuinfo"
    p.write_text("processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
                 "CPU implementer\t: 0x41\nCPU part\t: 0xd08\n\nprocessor\t: 1\nFeatures\t: fp asimd\n")
    assert read_cpuinfo(p) == ("Cortex-A72", ["fp", "asimd", "evtstrm", "crc32", "cpuid"])


def cli(argv: list[str]) -> int:
    from cahp_edge.cli import main

    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_cli_targets_list_and_show(capsys):
    import json

    assert cli(["targets", "list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in SHIPPED)
    assert cli(["targets", "show", "rpi4-arm64", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["cpu"] == "cortex-a72" and d["quantization"]["weight_type"] == "int8"
    assert cli(["targets", "show", "rpi3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown target 'rpi3'") and "rpi4-arm64" in err
