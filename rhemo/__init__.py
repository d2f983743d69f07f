"""Support package for the RH-emo reproduction: corpus data (``rhemo.data``), the training core (``rhemo.train``), experiment orchestration (``rhemo.experiments``) and inference (``rhemo.inference``)."""

__version__ = "0.1.0"
