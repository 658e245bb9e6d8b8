"""cahp-edge: prune attention heads with CAHP and ship the smaller model to edge devices."""

__version__ = "0.1.0"
