"""Tiny seeded models for every registered adapter, built in-process from configs."""

from __future__ import annotations

import torch

TINY_CONFIGS = {
    "bert": dict(model_type="bert", hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                 intermediate_size=48, vocab_size=120, max_position_embeddings=64),
    "roberta": dict(model_type="roberta", hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                    intermediate_size=48, vocab_size=120, max_position_embeddings=70, type_vocab_size=1,
                    pad_token_id=1),
    "xlm-roberta": dict(model_type="xlm-roberta", hidden_size=24, num_hidden_layers=2, num_attention_heads=6,
                        intermediate_size=40, vocab_size=120, max_position_embeddings=70, type_vocab_size=1,
                        pad_token_id=1),
    "electra": dict(model_type="electra", hidden_size=32, embedding_size=16, num_hidden_layers=3,
                    num_attention_heads=4, intermediate_size=48, vocab_size=120, max_position_embeddings=64),
    "distilbert": dict(model_type="distilbert", dim=32, n_layers=3, n_heads=4, hidden_dim=48, vocab_size=120,
                       max_position_embeddings=64),
}


def tiny_model(family: str, num_labels: int = 3, seed: int = 0):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    kw = dict(TINY_CONFIGS[family])
    mt = kw.pop("model_type")
    cfg = AutoConfig.for_model(mt, num_labels=num_labels, **kw)
    torch.manual_seed(seed)
    m = AutoModelForSequenceClassification.from_config(cfg, attn_implementation="eager")
    # random init has near-zero biases; make them non-trivial so zero-head layers are really tested
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return m.eval()


def tiny_batch(model, batch: int = 4, seq: int = 12, seed: int = 1):
    """Random ids with ragged padding (every row has a different number of real tokens)."""
    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    for i in range(batch):
        mask[i, seq - i * 2:] = 0
    pad = getattr(model.config, "pad_token_id", 0) or 0
    ids = ids.masked_fill(mask == 0, pad)
    out = {"input_ids": ids, "attention_mask": mask}
    return out


def spread(model, seed: int = 0):
    """Re-draw weights at unit-variance scale (1/sqrt(fan_in) for matrices).

    HF's init (std 0.02) makes every head's contribution to the logits ~1e-4, close to the 1e-5
    tolerance, so a wrong head could pass unnoticed; at this scale dropping a head moves logits by ~0.1.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                scale = 1.0 if "embeddings" in name else p.shape[1] ** -0.5
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            elif "LayerNorm" in name or "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model
