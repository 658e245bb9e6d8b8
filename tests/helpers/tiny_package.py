"""A tiny exported package (model.onnx + tokenizer.json + config.json + eval.jsonl) for runner tests.

`make_tiny_package(dir)` exports tests/helpers/tiny.py's BERT with the legacy exporter, writes a WordPiece
tokenizer over its 120-token vocabulary and eval data whose labels are the torch model's own
predictions, so an fp32 run that tokenizes, pads and batches correctly scores exactly 1.0.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

WORDS = [f"w{i}" for i in range(115)]  # ids 5..119 after the five specials
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tok


def sentences(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20))) for _ in range(n)]


def make_tiny_package(out: Path, n_eval: int = 40, seed: int = 0) -> Path:
    import torch

    from tests.helpers.tiny import tiny_model

    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = tiny_model("bert", num_labels=3, seed=seed)
    model.config.id2label = {0: "neg", 1: "neu", 2: "pos"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    tok = make_tokenizer()
    tok.save(str(out / "tokenizer.json"))
    (out / "config.json").write_text(model.config.to_json_string())

    texts = sentences(n_eval, seed)

    def logits_of(t: str):
        enc = tok.encode(t)
        ids = torch.tensor([enc.ids])
        types = torch.tensor([enc.type_ids])
        return model(ids, attention_mask=torch.ones_like(ids), token_type_ids=types).logits[0]  # (3,)

    with torch.no_grad():
        # a random model predicts one class for everything: centre and scale its head so labels vary
        z = torch.stack([logits_of(t) for t in texts])  # (N, 3)
        k = 1.0 / (z - z.mean(0)).std().clamp_min(1e-6)
        model.classifier.weight.mul_(k)
        model.classifier.bias.copy_(k * (model.classifier.bias - z.mean(0)))
        z = torch.stack([logits_of(t) for t in texts])  # (N, 3)
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    dyn = {n: {0: "batch", 1: "seq"} for n in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer chatter
        torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(out / "model.onnx"),
                          dynamo=False, opset_version=17, input_names=list(dyn), output_names=["logits"],
                          dynamic_axes={**dyn, "logits": {0: "batch"}})
    with open(out / "eval.jsonl", "w") as f:
        for t, y in zip(texts, z.argmax(-1).tolist(), strict=True):
            f.write(json.dumps({"label": y, "text": t}) + "\n")
    return out


def cached_tiny_package(tmp_path_factory) -> Path:
    """One tiny package per test session, shared by the runtime and validate tests."""
    out = tmp_path_factory.getbasetemp() / "cahp-tiny-package"
    if not (out / "eval.jsonl").is_file():
        make_tiny_package(out)
    return out
