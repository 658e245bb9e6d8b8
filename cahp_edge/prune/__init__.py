"""Choose which attention heads to keep: CAHP and the baselines behind one interface.

    from cahp_edge.prune.select import select_heads      # (model, adapter, data, PruneOptions) -> HeadPlan
    from cahp_edge.prune.options import PruneOptions     # torch-free: the CLI and build.toml derive from it

Kept import-free so the torch-free parts (options, method registry) load without torch.
"""
