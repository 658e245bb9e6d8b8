"""Sentence-embedding models: a bare encoder plus the checkpoint's pooling and normalisation, as one module.

    pooling = read_pooling(folder)     # sentence-transformers' modules.json + 1_Pooling/config.json
    model = SentenceEmbedder(AutoModel.from_pretrained(folder), pooling)
    model(**inputs).logits             # (B, D) sentence embeddings

The embedding is returned as ``.logits`` so every phase that runs "the task's output tensor" (masks,
salience, export, parity) runs embeddings unchanged; :mod:`cahp_edge.model.task_ops` says how that
tensor is scored. Pooling and normalisation live inside ``forward``, so the exported ONNX graph hands a
device the finished embedding from one ``session.run``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from cahp_edge.errors import ModelError

POOLING_FILE = "cahp_pooling.json"  # what a pruned or exported embedding folder records
POOLING_MODES = ("mean", "cls", "max")


@dataclass(frozen=True)
class Pooling:
    mode: str = "mean"
    normalize: bool = True
    source: str = "default"  # where the choice came from: a file, or "default" (stated to the user)

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_POOLING = Pooling()
DEFAULT_NOTE = ("no pooling config found (sentence-transformers' modules.json + 1_Pooling/config.json): "
                "using mean pooling over non-padding tokens and L2 normalisation")


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelError(f"{path} is unreadable", str(e)[:200], "restore the file from the checkpoint") from e


def read_pooling(folder: Path) -> Pooling | None:
    """The checkpoint's pooling, or None when the folder does not say (callers state DEFAULT_POOLING)."""
    folder = Path(folder)
    if (folder / POOLING_FILE).is_file():
        d = _load_json(folder / POOLING_FILE)
        return Pooling(d.get("mode", "mean"), bool(d.get("normalize", True)), str(folder / POOLING_FILE))
    mods = _load_json(folder / "modules.json") if (folder / "modules.json").is_file() else None
    if not isinstance(mods, list):
        return None
    pool = next((m for m in mods if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling")), None)
    if pool is None:
        return None
    cfg_path = folder / str(pool.get("path", "")) / "config.json"
    if not cfg_path.is_file():
        return None
    cfg = _load_json(cfg_path)
    modes = [m for m, key in (("cls", "pooling_mode_cls_token"), ("mean", "pooling_mode_mean_tokens"),
                              ("max", "pooling_mode_max_tokens")) if cfg.get(key)]
    others = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v and k not in (
        "pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens")]
    if len(modes) != 1 or others:
        raise ModelError(f"{cfg_path} asks for pooling {modes + others}",
                         "cahp-edge exports exactly one of mean, cls or max pooling",
                         "set one pooling_mode_* to true, or pass a checkpoint with a supported pooling")
    normalize = any(isinstance(m, dict) and str(m.get("type", "")).endswith("Normalize") for m in mods)
    return Pooling(modes[0], normalize, str(cfg_path))


def write_pooling(folder: Path, pooling: Pooling, hidden: int | None = None, max_length: int = 128) -> None:
    """cahp_pooling.json, and with ``hidden`` the sentence-transformers module files (tasks.ST_FILES) that let
    its ONNX backend load an exported folder (it pools the graph's ``last_hidden_state`` itself)."""
    folder = Path(folder)
    (folder / POOLING_FILE).write_text(json.dumps(pooling.to_dict(), indent=2) + "\n", encoding="utf-8")
    if hidden is None:
        return
    mods = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if pooling.normalize:
        mods.append({"idx": 2, "name": "2", "path": "2_Normalize",
                     "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(mods, indent=2) + "\n", encoding="utf-8")
    (folder / "1_Pooling").mkdir(exist_ok=True)
    cfg = {"word_embedding_dimension": hidden, **{f"pooling_mode_{k}": pooling.mode == m for m, k in
                                                  (("cls", "cls_token"), ("mean", "mean_tokens"),
                                                   ("max", "max_tokens"))},
           "pooling_mode_mean_sqrt_len_tokens": False}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": False}) + "\n", encoding="utf-8")


class _Output:
    """What forward returns: ``logits`` is the task output (here the (B, D) sentence embedding);
    ``attentions`` the encoder's maps when asked for (CAHP's signatures read them)."""

    def __init__(self, logits: torch.Tensor, attentions=None, last_hidden_state=None) -> None:
        self.logits = logits
        self.attentions = attentions
        self.last_hidden_state = last_hidden_state  # (B, T, H): what optimum's feature extraction reads


class SentenceEmbedder(nn.Module):
    """Encoder + pooling (+ L2 normalisation). ``base_model`` is the encoder, so architecture adapters
    find its layers exactly as in a classifier."""

    cahp_task = "sentence-embedding"

    def __init__(self, encoder: nn.Module, pooling: Pooling = DEFAULT_POOLING) -> None:
        super().__init__()
        if pooling.mode not in POOLING_MODES:
            raise ModelError(f"unknown pooling {pooling.mode!r}", f"supported: {', '.join(POOLING_MODES)}",
                             "fix cahp_pooling.json")
        self.encoder = encoder
        self.pooling = pooling

    @property
    def base_model(self) -> nn.Module:
        return self.encoder

    @property
    def config(self):
        return self.encoder.config

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, output_attentions: bool = False,
                **_unused) -> _Output:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           output_attentions=output_attentions, **kw)
        h = out.last_hidden_state  # (B, T, H)
        m = attention_mask.to(h.dtype).unsqueeze(-1)  # (B, T, 1): padding never enters the embedding
        if self.pooling.mode == "mean":
            e = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)  # (B, H)
        elif self.pooling.mode == "cls":
            e = h[:, 0]
        else:
            e = h.masked_fill(m == 0, torch.finfo(h.dtype).min).amax(1)
        if self.pooling.normalize:
            e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # sentence-transformers' Normalize
        return _Output(e, out.attentions if output_attentions else None, h)
