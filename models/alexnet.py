"""AlexNet for speech emotion recognition, real or quaternion (torchvision layout).

Real (``quat=False``): input (N, 1, 512, 128) spectrograms. Quaternion (``quat=True``): input the RH-emo
embeddings (N, 4, 64, 64); every conv becomes a ``QuaternionConv`` and the two hidden classifier layers
``QuaternionLinear`` (about 1/4 of the parameters); the final Linear stays real in both cases.

state_dict keys follow torchvision / the authors: ``features.{0,3,6,8,10}.*``, ``classifier.{1,4,6}.*``.

>>> import torch
>>> from models import AlexNet
>>> net = AlexNet(quat=True, num_classes=4, hidden_size=64).eval()
>>> tuple(net(torch.rand(2, 4, 64, 64)).shape)
(2, 4)
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from quaternion_layers import QuaternionConv, QuaternionLinear

from ._checks import check_batch, check_classifier, check_in_channels, check_positive_int

__all__ = ["AlexNet"]

_NAME = "AlexNet"
#: Smallest H, W that survives the stride-4 conv and the three 3×3/2 max-pools.
_MIN_SIZE = 63


class AlexNet(nn.Module):
    """AlexNet with 1 (real) or 4 (quaternion) input channels.

    Args:
        quat: quaternion convolutions and hidden Linears.
        num_classes: outputs of the final (real) Linear.
        hidden_size: width of the two hidden classifier layers (multiple of 4 when ``quat``).
        classifier_dropout: dropout before each of the first two classifier Linears.
        in_channels: override the input channels (default 1 real, 4 quaternion), e.g. a real net on the
            4-channel RH-emo embedding.

    Shapes: (N, C, H, W) → (N, num_classes). The adaptive 6×6 pool makes any H, W >= 63 work
    (64×64 embeddings end at 1×1 and are upsampled to 6×6, as in the original).
    """

    def __init__(self, quat: bool = False, num_classes: int = 1000, hidden_size: int = 4096,
                 classifier_dropout: float = 0.5, in_channels: Optional[int] = None) -> None:
        super().__init__()
        self.quat = bool(quat)
        self.in_channels = check_in_channels(in_channels, self.quat, _NAME)
        num_classes = check_positive_int(num_classes, "num_classes", _NAME)
        hidden_size, p = check_classifier(hidden_size, classifier_dropout, self.quat, _NAME)
        conv = QuaternionConv if self.quat else nn.Conv2d
        linear = QuaternionLinear if self.quat else nn.Linear

        self.features = nn.Sequential(
            conv(self.in_channels, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            conv(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            conv(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            conv(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            conv(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p), linear(256 * 6 * 6, hidden_size), nn.ReLU(inplace=True),
            nn.Dropout(p), linear(hidden_size, hidden_size), nn.ReLU(inplace=True),
            nn.Linear(hidden_size, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float → logits (N, num_classes)."""
        check_batch(x, _NAME, self.in_channels, min_size=_MIN_SIZE, dtype=self.classifier[6].weight.dtype)
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))
