"""VGG (no batch-norm) for speech emotion recognition, real or quaternion.

The convolutional trunk is described by a list in ``VGG_types``: an int is a 3×3 conv (padding 1, bias) with
that many output channels followed by ReLU, ``"M"`` is a 2×2 max-pool. There is no adaptive pooling: the
classifier's first Linear takes ``flatten_dim`` inputs, which depends on the input size. By default it is
derived from the expected input (32768 for a real VGG16 on (1, 512, 128) spectrograms, 2048 for a quaternion
VGG16 on (4, 64, 64) RH-emo embeddings); an explicit ``flatten_dim`` (the authors' argument) is honoured.

Quaternion (``quat=True``): the convs and the two hidden Linears are quaternion layers; the final Linear is
real. Keys: ``features.<i>.*`` (conv indices 0,2,5,7,10,... for VGG16), ``classifier.{0,3,6}.*``.

>>> import torch
>>> from models import VGGNet
>>> net = VGGNet('VGG11', quat=True, num_classes=4, hidden_size=64).eval()
>>> net.flatten_dim
2048
>>> tuple(net(torch.rand(2, 4, 64, 64)).shape)
(2, 4)
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from quaternion_layers import QuaternionConv, QuaternionLinear

from ._checks import check_batch, check_classifier, check_in_channels, check_positive_int

__all__ = ["VGGNet", "VGG_types"]

_NAME = "VGGNet"

#: Trunk layouts: int = 3×3 conv with that many output channels (+ ReLU), "M" = 2×2 max-pool.
VGG_types: Dict[str, List[Union[int, str]]] = {
    "simple": [16, "M", 32, "M", 128],
    "VGG11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "VGG13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "VGG16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "VGG19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def default_input_shape(in_channels: int, quat: bool) -> Tuple[int, int, int]:
    """(C, H, W) a VGGNet expects by default: the RH-emo embedding for 4-channel / quaternion nets,
    else the (1, 512, 128) spectrogram."""
    if quat or in_channels == 4:
        return (in_channels, 64, 64)
    return (in_channels, 512, 128)


def flatten_size(architecture: str, input_shape: Sequence[int]) -> int:
    """Values per example after the trunk of ``architecture`` for input (C, H, W).

    >>> flatten_size('VGG16', (1, 512, 128)), flatten_size('VGG16', (4, 64, 64))
    (32768, 2048)
    """
    layout = _layout(architecture)
    _, h, w = (int(s) for s in input_shape)
    for item in layout:
        if item == "M":
            h, w = h // 2, w // 2
    channels = [c for c in layout if c != "M"][-1]
    if h < 1 or w < 1:
        raise ValueError(f"{_NAME}: input {tuple(input_shape)} is too small for {architecture} "
                         f"({layout.count('M')} 2×2 max-pools)")
    return int(channels) * h * w


def _layout(architecture: str) -> List[Union[int, str]]:
    if architecture not in VGG_types:
        raise ValueError(f"{_NAME}: unknown architecture {architecture!r}; choose one of {sorted(VGG_types)}")
    return VGG_types[architecture]


class VGGNet(nn.Module):
    """VGG without batch-norm, real (1-channel spectrogram) or quaternion (4-channel embedding).

    Args:
        architecture: a key of ``VGG_types``.
        classifier_dropout: dropout after each hidden classifier layer.
        flatten_dim: input size of the first classifier Linear; None → derived from ``input_shape``.
        quat: quaternion convs and hidden Linears.
        num_classes: outputs of the final (real) Linear.
        hidden_size: width of the hidden classifier layers (multiple of 4 when ``quat``).
        in_channels: override the input channels (default 1 real, 4 quaternion).
        input_shape: (C, H, W) used to derive ``flatten_dim``; default (4, 64, 64) for quaternion or
            4-channel nets, (1, 512, 128) otherwise.

    Shapes: (N, C, H, W) → (N, num_classes); H, W must give ``flatten_dim`` values after the trunk.
    """

    def __init__(self, architecture: str = "VGG16", classifier_dropout: float = 0.5,
                 flatten_dim: Optional[int] = None, quat: bool = False,
                 num_classes: int = 4, hidden_size: int = 4096, in_channels: Optional[int] = None,
                 input_shape: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.quat = bool(quat)
        self.architecture = architecture
        self.in_channels = check_in_channels(in_channels, self.quat, _NAME)
        num_classes = check_positive_int(num_classes, "num_classes", _NAME)
        hidden_size, p = check_classifier(hidden_size, classifier_dropout, self.quat, _NAME)
        if input_shape is None:
            input_shape = default_input_shape(self.in_channels, self.quat)
        elif len(input_shape) != 3 or int(input_shape[0]) != self.in_channels:
            raise ValueError(f"{_NAME}: input_shape must be (C={self.in_channels}, H, W), got {input_shape!r}")
        self.input_shape = tuple(int(s) for s in input_shape)
        if flatten_dim is None:
            flatten_dim = flatten_size(architecture, self.input_shape)
        self.flatten_dim = check_positive_int(flatten_dim, "flatten_dim", _NAME)
        if self.quat and self.flatten_dim % 4:
            raise ValueError(f"{_NAME}: flatten_dim must be divisible by 4 when quat=True, got {flatten_dim}")

        conv = QuaternionConv if self.quat else nn.Conv2d
        linear = QuaternionLinear if self.quat else nn.Linear
        layers: List[nn.Module] = []
        channels = self.in_channels
        for item in _layout(architecture):
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [conv(channels, int(item), kernel_size=3, stride=1, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            linear(self.flatten_dim, hidden_size), nn.ReLU(inplace=True), nn.Dropout(p),
            linear(hidden_size, hidden_size), nn.ReLU(inplace=True), nn.Dropout(p),
            nn.Linear(hidden_size, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float → logits (N, num_classes)."""
        check_batch(x, _NAME, self.in_channels, dtype=self.classifier[6].weight.dtype)
        # Checked before the trunk runs, so a wrong input size costs nothing and names the fix.
        n = flatten_size(self.architecture, tuple(x.shape[1:]))
        if n != self.flatten_dim:
            raise ValueError(f"{_NAME}: input {tuple(x.shape)} gives {n} values per example after the trunk but "
                             f"flatten_dim is {self.flatten_dim} (built for input {self.input_shape}); pass "
                             f"flatten_dim={n} or input_shape={tuple(x.shape[1:])}")
        return self.classifier(torch.flatten(self.features(x), 1))
