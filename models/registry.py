"""Model registry: build a network from its name and keyword arguments (e.g. from a config or a checkpoint).

Each entry carries the model's metadata (as timm's ``default_cfgs``): its role (``rhemo``, the autoencoder;
``ser``, a classifier), the name of its final classification Linear and its input shapes. Every other module
takes model names and roles from here.

>>> from models.registry import create_model, input_shape, final_layer_prefix, count_parameters, names
>>> names('ser'), names('rhemo') == (RHEMO_MODEL,)
(('AlexNet', 'VGGNet', 'resnet50'), True)
>>> net = create_model('AlexNet', quat=True, num_classes=4, hidden_size=64)
>>> input_shape('AlexNet', quat=True), final_layer_prefix('AlexNet')
((4, 64, 64), 'classifier.6')
>>> count_parameters(net) > 0
True
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

from torch import nn

from .alexnet import AlexNet
from .autoencoder import INPUT_SHAPE as RHEMO_INPUT_SHAPE
from .autoencoder import LATENT_SHAPE, simple_autoencoder_2_vad
from .resnet import resnet50
from .vgg import VGGNet

__all__ = ["MODELS", "ModelSpec", "SPECS", "RHEMO_MODEL", "ROLES", "names", "create_model", "list_models", "accepted_kwargs", "input_shape", "final_layer_prefix",
           "count_parameters"]

ROLES = ("rhemo", "ser")


@dataclass(frozen=True)
class ModelSpec:
    """A registered network: constructor, role, final classification Linear, input shape (real, quaternion).

    ``final_layer`` is the module name of the last (real) classification Linear; its parameters are
    ``<final_layer>.weight`` and ``<final_layer>.bias``. RH-emo always reads the spectrogram (``quat`` only
    switches its decoder); the SER nets read the RH-emo embedding when quaternion, the spectrogram when real.
    """
    constructor: Callable[..., nn.Module]
    role: str
    final_layer: str
    real_input: Tuple[int, int, int] = tuple(RHEMO_INPUT_SHAPE)
    quat_input: Tuple[int, int, int] = tuple(LATENT_SHAPE)


#: name → spec. Names are the authors' (they appear in configs and checkpoints).
SPECS: Dict[str, ModelSpec] = {
    "simple_autoencoder_2_vad": ModelSpec(simple_autoencoder_2_vad, "rhemo", "classifier_discrete.6",
                                          quat_input=tuple(RHEMO_INPUT_SHAPE)),
    "AlexNet": ModelSpec(AlexNet, "ser", "classifier.6"),
    "VGGNet": ModelSpec(VGGNet, "ser", "classifier.6"),
    "resnet50": ModelSpec(resnet50, "ser", "fc"),
}
#: name → constructor
MODELS: Dict[str, Callable[..., nn.Module]] = {name: spec.constructor for name, spec in SPECS.items()}
#: the RH-emo autoencoder's registry name
RHEMO_MODEL = next(name for name, spec in SPECS.items() if spec.role == "rhemo")


def names(role: str) -> Tuple[str, ...]:
    """Registered names of one role ('rhemo' or 'ser'), in registration order."""
    if role not in ROLES:
        raise ValueError(f"unknown model role {role!r}; roles: {ROLES}")
    return tuple(name for name, spec in SPECS.items() if spec.role == role)


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
    spec = SPECS[_check_name(name)]
    return spec.quat_input if quat else spec.real_input


def final_layer_prefix(name: str) -> str:
    """Module name of the final classification Linear ('classifier.6' for AlexNet/VGG, 'fc' for resnet50,
    'classifier_discrete.6' for RH-emo's discrete head)."""
    return SPECS[_check_name(name)].final_layer


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable, by default) parameter values in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
