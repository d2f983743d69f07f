"""Training core: config schema, runtime, loaders, loop, checkpoints, run folders, losses, metrics."""
