"""Support package for the RH-emo reproduction: corpus data (``rhemo.data``) and the training engine (``rhemo.engine``)."""

__version__ = "0.1.0"
