"""Training engine: configuration, splits, losses, metrics, checkpoints, the train/eval loop and reports."""
