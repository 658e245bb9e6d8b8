"""The supported encoder families. BERT's layout is shared by RoBERTa, XLM-RoBERTa and ELECTRA."""

from __future__ import annotations

from cahp_edge.arch.base import Adapter

BERT = Adapter(name="bert", model_types=("bert",))
# RoBERTa-style tokenizers emit no token_type_ids (type_vocab_size is 1).
ROBERTA = Adapter(name="roberta", model_types=("roberta",), export_inputs=("input_ids", "attention_mask"))
XLM_ROBERTA = Adapter(name="xlm-roberta", model_types=("xlm-roberta",),
                      export_inputs=("input_ids", "attention_mask"))
ELECTRA = Adapter(name="electra", model_types=("electra",))
DISTILBERT = Adapter(
    name="distilbert",
    model_types=("distilbert",),
    heads_attr="n_heads",
    hidden_attr="dim",
    layers_attr="n_layers",
    ffn_attr="hidden_dim",
    layers_path="transformer.layer",
    attn_path="attention",
    q="q_lin",
    k="k_lin",
    v="v_lin",
    o_path="attention.out_lin",
    ffn_in_path="ffn.lin1",
    ffn_out_path="ffn.lin2",
    attn_norm_path="sa_layer_norm",
    ffn_norm_path="output_layer_norm",
    # transformers 4.57 reads n_heads and dim (= n_heads * head size) in forward; 5.x reads neither.
    count_attrs=(("n_heads", "heads"), ("dim", "width")),
    export_inputs=("input_ids", "attention_mask"),
)

ALL = (BERT, ROBERTA, XLM_ROBERTA, ELECTRA, DISTILBERT)
