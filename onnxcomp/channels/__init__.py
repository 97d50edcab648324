"""Channel removal: the dependency graph of coupled channels and the per-op handler registry."""
