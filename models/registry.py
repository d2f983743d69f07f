"""Model registry: build a network from its name and keyword arguments (e.g. from a config or a checkpoint).

>>> from models.registry import create_model, input_shape, final_layer_prefix, count_parameters
>>> net = create_model('AlexNet', quat=True, num_classes=4, hidden_size=64)
>>> input_shape('AlexNet', quat=True), final_layer_prefix('AlexNet')
((4, 64, 64), 'classifier.6')
>>> count_parameters(net) > 0
True
"""
from __future__ import annotations

import inspect
from typing import Callable, Dict, List, Tuple

from torch import nn

from .alexnet import AlexNet
from .autoencoder import INPUT_SHAPE as RHEMO_INPUT_SHAPE
from .autoencoder import LATENT_SHAPE, simple_autoencoder_2_vad
from .resnet import resnet50
from .vgg import VGGNet

__all__ = ["MODELS", "create_model", "list_models", "accepted_kwargs", "input_shape", "final_layer_prefix",
           "count_parameters"]

#: name → constructor. Names are the authors' (they appear in configs and checkpoints).
MODELS: Dict[str, Callable[..., nn.Module]] = {
    "simple_autoencoder_2_vad": simple_autoencoder_2_vad,
    "AlexNet": AlexNet,
    "VGGNet": VGGNet,
    "resnet50": resnet50,
}

# Name of the module holding each network's last (real) classification Linear; its parameters are
# "<prefix>.weight" and "<prefix>.bias".
_FINAL_LAYER = {
    "simple_autoencoder_2_vad": "classifier_discrete.6",
    "AlexNet": "classifier.6",
    "VGGNet": "classifier.6",
    "resnet50": "fc",
}


def _check_name(name: str) -> str:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {list_models()}")
    return name


def list_models() -> List[str]:
    """Registered model names, sorted."""
    return sorted(MODELS)


def accepted_kwargs(name: str) -> List[str]:
    """Constructor keyword arguments of model ``name``, in signature order (e.g. to filter a config:
    ``resnet50`` has no ``hidden_size`` or ``classifier_dropout``)."""
    return [p for p in inspect.signature(MODELS[_check_name(name)]).parameters if p != "self"]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build model ``name`` with constructor keyword arguments ``kwargs``.

    Unknown names and unknown keyword arguments raise ``ValueError`` listing what is accepted.
    """
    ctor = MODELS[_check_name(name)]
    accepted = accepted_kwargs(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{name}: unknown argument(s) {unknown}; accepted: {accepted}")
    return ctor(**kwargs)


def input_shape(name: str, quat: bool) -> Tuple[int, int, int]:
    """(C, T, F) of one input example the network expects.

    RH-emo always reads the spectrogram (1, 512, 128) (``quat`` only switches its decoder); the SER nets read
    the RH-emo embedding (4, 64, 64) when quaternion and the spectrogram (1, 512, 128) when real.
    """
    _check_name(name)
    if name == "simple_autoencoder_2_vad" or not quat:
        return tuple(RHEMO_INPUT_SHAPE)
    return tuple(LATENT_SHAPE)


def final_layer_prefix(name: str) -> str:
    """Module name of the final classification Linear ('classifier.6' for AlexNet/VGG, 'fc' for resnet50,
    'classifier_discrete.6' for RH-emo's discrete head)."""
    return _FINAL_LAYER[_check_name(name)]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable, by default) parameter values in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
