"""Experiment orchestration: the launcher, run references, reports and the paper table."""
