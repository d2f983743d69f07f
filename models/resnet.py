"""ResNet for speech emotion recognition, real or quaternion (torchvision v1.5 layout).

Real (``quat=False``): a 1-channel stem ``Conv2d(1, 64, 7, 2, 3)`` + ``BatchNorm2d`` for (N, 1, 512, 128)
spectrograms, Kaiming (fan_out) init of the convs as in torchvision. Quaternion (``quat=True``): every conv,
including the 1×1 downsample, is a ``QuaternionConv(bias=False)`` and every norm a ``QuaternionBatchNorm2d``;
input the (N, 4, 64, 64) RH-emo embeddings; quaternion layers keep their own init. ``fc`` is real in both.

Keys follow torchvision: ``conv1``, ``bn1``, ``layer{1..4}.<b>.{conv1,bn1,conv2,bn2,conv3,bn3}``,
``layer<l>.0.downsample.{0,1}``, ``fc``.

>>> import torch
>>> from models import resnet50
>>> net = resnet50(quat=True, num_classes=4).eval()
>>> tuple(net(torch.rand(1, 4, 64, 64)).shape)
(1, 4)
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Type, Union

import torch
from torch import nn

from quaternion_layers import QuaternionBatchNorm2d, QuaternionConv

from ._checks import check_batch, check_in_channels, check_positive_int

__all__ = ["ResNet", "Bottleneck", "BasicBlock", "resnet50", "resnet18"]


def _conv(quat: bool, in_planes: int, out_planes: int, kernel_size: int, stride: int = 1,
          padding: int = 0) -> nn.Module:
    """Bias-free conv: quaternion or real."""
    if quat:
        return QuaternionConv(in_planes, out_planes, kernel_size, stride=stride, padding=padding, bias=False)
    return nn.Conv2d(in_planes, out_planes, kernel_size, stride=stride, padding=padding, bias=False)


def _norm(quat: bool, planes: int) -> nn.Module:
    return QuaternionBatchNorm2d(planes) if quat else nn.BatchNorm2d(planes)


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 quat: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv(quat, inplanes, planes, 3, stride, 1)
        self.bn1 = _norm(quat, planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(quat, planes, planes, 3, 1, 1)
        self.bn2 = _norm(quat, planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (carries the stride, "v1.5") → 1×1 expand ×4, with a residual connection."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 quat: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv(quat, inplanes, planes, 1)
        self.bn1 = _norm(quat, planes)
        self.conv2 = _conv(quat, planes, planes, 3, stride, 1)
        self.bn2 = _norm(quat, planes)
        self.conv3 = _conv(quat, planes, planes * self.expansion, 1)
        self.bn3 = _norm(quat, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet trunk + real ``fc``.

    Args:
        block: ``Bottleneck`` or ``BasicBlock``.
        layers: blocks per stage, e.g. [3, 4, 6, 3] for ResNet-50.
        num_classes: outputs of ``fc``.
        quat: quaternion convs and norms.
        in_channels: override the input channels (default 1 real, 4 quaternion).

    Shapes: (N, C, H, W) → (N, num_classes); any H, W >= 1 (adaptive average pool before ``fc``).
    """

    def __init__(self, block: Type[Union[BasicBlock, Bottleneck]], layers: Sequence[int], num_classes: int = 1000,
                 quat: bool = False, in_channels: Optional[int] = None) -> None:
        super().__init__()
        self.quat = bool(quat)
        self.in_channels = check_in_channels(in_channels, self.quat, type(self).__name__)
        num_classes = check_positive_int(num_classes, "num_classes", type(self).__name__)
        self.inplanes = 64
        self.conv1 = _conv(self.quat, self.in_channels, 64, 7, 2, 3)
        self.bn1 = _norm(self.quat, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        # torchvision's init; it only matches real layers, so quaternion convs/QBN keep their own init.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: Type[Union[BasicBlock, Bottleneck]], planes: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv(self.quat, self.inplanes, planes * block.expansion, 1, stride),
                                       _norm(self.quat, planes * block.expansion))
        layers: List[nn.Module] = [block(self.inplanes, planes, stride, downsample, quat=self.quat)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, quat=self.quat) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float → logits (N, num_classes)."""
        check_batch(x, type(self).__name__, self.in_channels, dtype=self.fc.weight.dtype)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _no_pretrained(pretrained: bool, name: str) -> None:
    if pretrained:
        raise ValueError(f"{name}(pretrained=True): there are no ImageNet weights for these networks: they take "
                         "1-channel spectrograms (real) or 4-channel RH-emo embeddings (quaternion), not RGB "
                         "images. Use pretrained=False and train, or load one of our checkpoints.")


def resnet50(pretrained: bool = False, progress: bool = True, quat: bool = False, num_classes: int = 1000,
             in_channels: Optional[int] = None) -> ResNet:
    """ResNet-50 (Bottleneck [3, 4, 6, 3]); ``progress`` is accepted for API compatibility and unused.

    Real: (N, 1, H, W) → (N, num_classes); quaternion: (N, 4, H, W) → (N, num_classes).
    """
    _no_pretrained(pretrained, "resnet50")
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, quat=quat, in_channels=in_channels)


def resnet18(pretrained: bool = False, progress: bool = True, quat: bool = False, num_classes: int = 1000,
             in_channels: Optional[int] = None) -> ResNet:
    """ResNet-18 (BasicBlock [2, 2, 2, 2]); not used by the paper, handy for quick experiments."""
    _no_pretrained(pretrained, "resnet18")
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, quat=quat, in_channels=in_channels)
