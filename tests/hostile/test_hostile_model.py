"""Hostile checkpoints: missing, unsupported, damaged, pickled. One line, exit 1, nothing written."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from tests.hostile.support import fails_clean, run_cli, snapshot


def _config(ckpt: Path) -> dict:
    return json.loads((ckpt / "config.json").read_text())


def _set_config(ckpt: Path, **kw) -> None:
    d = _config(ckpt)
    d.update(kw)
    (ckpt / "config.json").write_text(json.dumps(d))


def test_model_folder_missing(tmp_path, capsys):
    fails_clean(["inspect", tmp_path / "nope"], capsys, "model folder not found", tmp_path)


def test_model_path_is_a_file(tmp_path, capsys):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    fails_clean(["inspect", f], capsys, "is a file, not a checkpoint folder", tmp_path)


def test_no_config(ckpt, tmp_path, capsys):
    (ckpt / "config.json").unlink()
    fails_clean(["inspect", ckpt], capsys, "no config.json", tmp_path)


def test_config_not_json(ckpt, tmp_path, capsys):
    (ckpt / "config.json").write_text('{"model_type": "bert",')
    fails_clean(["inspect", ckpt], capsys, "config.json in", tmp_path)


def test_config_without_model_type(ckpt, tmp_path, capsys):
    d = _config(ckpt)
    d.pop("model_type")
    (ckpt / "config.json").write_text(json.dumps(d))
    fails_clean(["inspect", ckpt], capsys, "has no model_type", tmp_path)


def test_unknown_model_type(ckpt, tmp_path, capsys):
    _set_config(ckpt, model_type="frobnicator")
    line = fails_clean(["inspect", ckpt], capsys, ["'frobnicator' is not supported", "bert"], tmp_path)
    assert "distilbert" in line  # the supported list is named


def test_decoder_only_gpt2(tmp_path, capsys):
    from transformers import GPT2Config

    d = tmp_path / "gpt2"
    GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=50).save_pretrained(str(d))
    fails_clean(["inspect", d], capsys, ["'gpt2' is not supported", "encoder"], tmp_path)


def test_bert_configured_as_decoder(ckpt, tmp_path, capsys):
    _set_config(ckpt, is_decoder=True)
    fails_clean(["inspect", ckpt], capsys, "configured as a decoder is not supported", tmp_path)


def test_albert_shared_weights(tmp_path, capsys):
    from transformers import AlbertConfig

    d = tmp_path / "albert"
    AlbertConfig(
        num_hidden_layers=2,
        num_attention_heads=2,
        hidden_size=16,
        intermediate_size=32,
        embedding_size=8,
        vocab_size=50,
    ).save_pretrained(str(d))
    fails_clean(
        ["inspect", d], capsys, ["'albert' is not supported", "shares one set of attention weights"], tmp_path
    )


def test_truncated_safetensors(ckpt, tmp_path, capsys):
    w = ckpt / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    fails_clean(["inspect", ckpt], capsys, ["corrupt or truncated", "re-copy"], tmp_path)


def test_corrupt_safetensors_header(ckpt, tmp_path, capsys):
    w = ckpt / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[8:40] = b"\xff" * 32  # garbage where the JSON header starts
    w.write_bytes(bytes(raw))
    fails_clean(["inspect", ckpt], capsys, "corrupt or truncated", tmp_path)


def test_safetensors_header_length_lies(ckpt, tmp_path, capsys):
    w = ckpt / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[:8] = (2**62).to_bytes(8, "little")
    w.write_bytes(bytes(raw))
    fails_clean(["inspect", ckpt], capsys, "exceeds file size", tmp_path)


def test_empty_weights_file(ckpt, tmp_path, capsys):
    (ckpt / "model.safetensors").write_bytes(b"")
    fails_clean(["inspect", ckpt], capsys, "shorter than its 8-byte header", tmp_path)


def test_encoder_weights_missing(ckpt, tmp_path, capsys):
    """transformers re-initialises missing weights with only a warning: a silently different model."""
    from safetensors.torch import load_file, save_file

    w = ckpt / "model.safetensors"
    d = {k: v for k, v in load_file(str(w)).items() if ".layer.1." not in k}
    save_file(d, str(w), metadata={"format": "pt"})
    fails_clean(["inspect", ckpt], capsys, ["lacks 16 encoder weight", "layer.1"], tmp_path)


def test_weights_of_another_shape(ckpt, tmp_path, capsys):
    _set_config(ckpt, intermediate_size=64)  # weights were saved with 48
    fails_clean(["inspect", ckpt], capsys, "could not load the checkpoint", tmp_path)


def test_no_weights_at_all(ckpt, tmp_path, capsys):
    (ckpt / "model.safetensors").unlink()
    fails_clean(["inspect", ckpt], capsys, "no model weights", tmp_path)


class _Plant:
    """Unpickling this creates ``path``: stands in for arbitrary code run by a hostile checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _pickle_only(ckpt: Path, payload: bytes) -> None:
    (ckpt / "model.safetensors").unlink()
    (ckpt / "pytorch_model.bin").write_bytes(payload)


def test_pickle_refused_without_trust_pickle(ckpt, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    _pickle_only(ckpt, pickle.dumps({"bert.embeddings.word_embeddings.weight": _Plant(marker)}))
    line = fails_clean(["inspect", ckpt], capsys, ["pickle", "--trust-pickle"], tmp_path)
    assert "arbitrary code" in line
    assert not marker.exists()
    # every command that loads a model refuses it, not only inspect
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"num_heads": [4, 4, 4], "kept": [[0], [1], [2]]}))
    fails_clean(
        ["reshape", "--model", ckpt, "--plan", plan, "--out", tmp_path / "o"],
        capsys,
        ["pickle", "--trust-pickle"],
        tmp_path,
    )
    assert not marker.exists()


def test_malicious_pickle_not_run_even_with_trust_pickle(ckpt, tmp_path, capsys):
    """--trust-pickle lets transformers read the file, which it does with weights_only: still no code runs."""
    marker = tmp_path / "PWNED"
    _pickle_only(ckpt, pickle.dumps({"bert.embeddings.word_embeddings.weight": _Plant(marker)}))
    fails_clean(["inspect", ckpt, "--trust-pickle"], capsys, "could not load the checkpoint", tmp_path)
    assert not marker.exists()


def test_real_pickle_loads_with_trust_pickle(ckpt, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    sd = load_file(str(ckpt / "model.safetensors"))
    (ckpt / "model.safetensors").unlink()
    torch.save(sd, ckpt / "pytorch_model.bin")
    fails_clean(["inspect", ckpt], capsys, "--trust-pickle", tmp_path)
    r = run_cli(["inspect", ckpt, "--trust-pickle", "--json"], capsys)
    assert r.code == 0, r.err
    assert json.loads(r.out)["heads"] == 12


def test_tokenizer_missing(ckpt, tiny_data, tmp_path, capsys):
    for p in ckpt.glob("tokenizer*"):
        p.unlink()
    fails_clean(
        ["prune", "--model", ckpt, "--data", tiny_data / "train.tsv", "--out", tmp_path / "plan"],
        capsys,
        ["no tokenizer files", "copy the tokenizer files"],
        tmp_path,
    )


def test_tokenizer_corrupt(ckpt, tiny_data, tmp_path, capsys):
    (ckpt / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}}')
    fails_clean(
        ["prune", "--model", ckpt, "--data", tiny_data / "train.tsv", "--out", tmp_path / "plan"],
        capsys,
        "could not be loaded",
        tmp_path,
    )


def test_base_encoder_given_to_prune(ckpt, tiny_data, tmp_path, capsys):
    _set_config(ckpt, architectures=["BertModel"])
    fails_clean(
        ["prune", "--model", ckpt, "--data", tiny_data / "train.tsv", "--out", tmp_path / "plan"],
        capsys,
        ["not a fine-tuned model for a known task", "cahp-edge finetune", "--task sentence-embedding"],
        tmp_path,
    )


def test_existing_output_is_kept(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"num_heads": [4, 4, 4], "kept": [[0], [1], [2]]}))
    before = snapshot(out)
    fails_clean(
        ["reshape", "--model", ckpt, "--plan", plan, "--out", out],
        capsys,
        ["exists and is not empty", "--overwrite"],
        tmp_path,
    )
    assert snapshot(out) == before


@pytest.mark.parametrize(
    ("bad", "msg"),
    [("--seq-len=0", "--seq-len"), ("--frobnicate", "--frobnicate")],
    ids=["seq-len 0", "unknown option"],
)
def test_cli_usage_errors_exit_2(ckpt, tmp_path, capsys, bad, msg):
    fails_clean(["inspect", ckpt, bad], capsys, msg, tmp_path, code=2)


def _real_cli(*argv) -> tuple[int, str]:
    """The console script in a fresh process: library loggers and warnings write to the real stderr."""
    import subprocess

    from tests.hostile.support import CLI, REPO

    p = subprocess.run([str(CLI), *map(str, argv)], capture_output=True, text=True, timeout=300, cwd=REPO)
    return p.returncode, p.stderr


def test_real_process_missing_weights_and_pickle_warning_stay_one_line(ckpt, tmp_path):
    """transformers' load report and torch's pickle warnings must not leak around the error line."""
    from safetensors.torch import load_file, save_file

    from tests.hostile.support import assert_one_line_error

    w = ckpt / "model.safetensors"
    sd = load_file(str(w))
    save_file({k: v for k, v in sd.items() if ".layer.2." not in k}, str(w), metadata={"format": "pt"})
    code, err = _real_cli("inspect", ckpt)
    assert code == 1
    assert_one_line_error(err, "lacks 16 encoder weight")
    w.unlink()
    (ckpt / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Plant(tmp_path / "PWNED")}))
    code, err = _real_cli("inspect", ckpt, "--trust-pickle")
    assert code == 1 and not (tmp_path / "PWNED").exists()
    assert_one_line_error(err, "could not load the checkpoint")


def test_tokenizer_of_another_model(ckpt, tiny_data, tmp_path, capsys):
    """A tokenizer with a larger vocabulary: ids past the embedding table (was an IndexError traceback)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"t{i}": i for i in range(500)} | {"[UNK]": 500, "[PAD]": 501, "[CLS]": 502, "[SEP]": 503}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(ckpt / "tokenizer.json"))
    args = ["prune", "--model", ckpt, "--data", tiny_data / "train.tsv", "--out", tmp_path / "plan"]
    fails_clean(args, capsys, ["does not belong to its model", "120 entries"], tmp_path)


@pytest.mark.parametrize(
    ("patch", "msg"),
    [
        ({"num_attention_heads": 0}, "num_attention_heads = 0 is out of range"),  # refused before loading
        ({"num_attention_heads": 5}, "could not load the checkpoint"),  # in range, but not a divisor
        ({"num_hidden_layers": "three"}, "num_hidden_layers = 'three' is out of range"),
        ({"vocab_size": -5}, "vocab_size = -5 is out of range"),
    ],
    ids=["zero heads", "heads do not divide hidden size", "layers as a string", "negative vocab size"],
)
def test_config_values_impossible(patch, msg, ckpt, tmp_path, capsys):
    _set_config(ckpt, **patch)
    fails_clean(["inspect", ckpt], capsys, msg, tmp_path)


def test_output_below_a_file(ckpt, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"num_heads": [4, 4, 4], "kept": [[0], [1], [2]]}))
    fails_clean(
        ["reshape", "--model", ckpt, "--plan", plan, "--out", tmp_path / "afile" / "sub"],
        capsys,
        "could not write",
        tmp_path,
    )


def test_hub_id_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fails_clean(
        ["inspect", "someorg/no-such-model"], capsys, ["could not download model", "network"], tmp_path
    )
