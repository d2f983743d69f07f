"""Corpus readers, feature extraction, the segment store, label views and the synthetic demo corpus."""
