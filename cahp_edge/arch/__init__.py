"""Architecture adapters, looked up by ``config.model_type``."""

from __future__ import annotations

from cahp_edge.arch.base import Adapter, ZeroHeadAttention
from cahp_edge.arch.families import ALL
from cahp_edge.errors import UnsupportedArchitecture

_REGISTRY: dict[str, Adapter] = {}

# Families we know and refuse on purpose, with the reason.
_REFUSED = {
    "albert": "ALBERT shares one set of attention weights across all layers, so a head cannot be removed "
    "from one layer alone",
}


def register(adapter: Adapter) -> Adapter:
    for mt in adapter.model_types:
        _REGISTRY[mt] = adapter
    return adapter


for _a in ALL:
    register(_a)


def registered() -> dict[str, Adapter]:
    return dict(_REGISTRY)


def supported_list() -> str:
    return ", ".join(sorted(_REGISTRY))


def get_adapter(config_or_type) -> Adapter:
    is_name = isinstance(config_or_type, str)
    model_type = config_or_type if is_name else getattr(config_or_type, "model_type", None)
    if model_type in _REGISTRY:
        if not is_name and (getattr(config_or_type, "is_decoder", False)
                            or getattr(config_or_type, "add_cross_attention", False)):
            raise UnsupportedArchitecture(
                f"model type '{model_type}' configured as a decoder is not supported",
                "cahp-edge prunes encoder self-attention of sequence classifiers",
                f"use an encoder checkpoint (is_decoder=false); supported: {supported_list()}",
            )
        return _REGISTRY[model_type]
    why = _REFUSED.get(model_type or "", "cahp-edge prunes encoder-only sequence classifiers")
    raise UnsupportedArchitecture(f"model type '{model_type}' is not supported", why,
                                  f"use one of the supported families: {supported_list()}")


__all__ = ["Adapter", "ZeroHeadAttention", "get_adapter", "register", "registered", "supported_list"]
