"""Quaternion convolution modules (1-D/2-D/3-D): thin ``nn.Module`` wrappers over :mod:`.functional`.

Parameter names and shapes match the authors' layers, so their state_dicts load unchanged:
``r_weight, i_weight, j_weight, k_weight`` (out/4, in/4, *k) for ``QuaternionConv`` and (in/4, out/4, *k)
for ``QuaternionTransposeConv``, ``bias`` (out,). With ``rotation=True`` a constant ``zero_kernel`` (the
weights' shape) is registered for key compatibility (a buffer here: it is a constant, the authors used a
frozen Parameter), and ``scale=True`` adds the trainable ``scale_param``.

>>> conv = QuaternionConv(4, 8, 3, padding=1)
>>> tuple(conv(torch.randn(2, 4, 16, 16)).shape)
(2, 8, 16, 16)
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from . import functional as QF
from .functional import _ntuple

__all__ = ["QuaternionConv", "QuaternionTransposeConv", "OPERATIONS"]

OPERATIONS = {"convolution1d": 1, "convolution2d": 2, "convolution3d": 3}


class _QuaternionConvNd(nn.Module):
    """Shared constructor / init / repr of the two quaternion convolution modules."""

    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, output_padding,
                 groups, bias, init_criterion, weight_init, seed, operation, rotation, quaternion_format,
                 scale):
        super().__init__()
        name = type(self).__name__
        in_q = QF.quaternion_channels(in_channels, f"{name}: in_channels")
        out_q = QF.quaternion_channels(out_channels, f"{name}: out_channels")
        if operation not in OPERATIONS:
            raise ValueError(f"{name}: operation must be one of {sorted(OPERATIONS)}, got {operation!r}")
        nd = OPERATIONS[operation]
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or in_q % groups \
                or out_q % groups:
            raise ValueError(f"{name}: groups must be a positive int dividing in_channels/4={in_q} and "
                             f"out_channels/4={out_q}, got {groups!r}")
        if init_criterion not in QF.CRITERIA:
            raise ValueError(f"{name}: init_criterion must be one of {QF.CRITERIA}, got {init_criterion!r}")
        if weight_init not in QF.WEIGHT_INITS:
            raise ValueError(f"{name}: weight_init must be one of {sorted(QF.WEIGHT_INITS)}, "
                             f"got {weight_init!r}")
        if scale and not rotation:
            raise ValueError(f"{name}: scale=True only applies to the rotation form; pass rotation=True")

        self.in_channels, self.out_channels = in_channels, out_channels
        self.operation = operation
        self.kernel_size = _ntuple(kernel_size, nd, f"{name}: kernel_size", 1)
        self.stride = _ntuple(stride, nd, f"{name}: stride", 1)
        self.dilation = _ntuple(dilation, nd, f"{name}: dilation", 1)
        if isinstance(padding, str) and not self.transposed:
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding string must be 'same' or 'valid', got {padding!r}")
            self.padding = padding
        else:
            self.padding = _ntuple(padding, nd, f"{name}: padding", 0)
        self.output_padding = _ntuple(output_padding, nd, f"{name}: output_padding", 0)
        self.groups = groups
        self.init_criterion, self.weight_init = init_criterion, weight_init
        self.rotation, self.quaternion_format, self.scale = bool(rotation), bool(quaternion_format), bool(scale)
        # components per tensor: the 3-block (i, j, k) layout only exists in the rotation form
        self.components = 3 if self.rotation and not self.quaternion_format else 4

        if self.transposed:
            shape = (in_q, out_q // groups) + self.kernel_size
        else:
            shape = (out_q, in_q // groups) + self.kernel_size
        for part in "rijk":
            self.register_parameter(f"{part}_weight", nn.Parameter(torch.empty(shape)))
        self.register_parameter("scale_param", nn.Parameter(torch.empty(shape)) if self.scale else None)
        self.register_parameter(
            "bias", nn.Parameter(torch.empty(self.components * out_q)) if bias else None)
        if self.rotation:
            self.register_buffer("zero_kernel", torch.zeros(shape))
        self.reset_parameters(QF.as_generator(seed))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw the weights (the configured init, quaternion-unit fans) and zero the bias."""
        QF.init_weights_(self.r_weight, self.i_weight, self.j_weight, self.k_weight,
                         "transpose" if self.transposed else "conv", self.weight_init, self.init_criterion,
                         generator)
        with torch.no_grad():
            if self.scale_param is not None:
                self.scale_param.copy_(QF.xavier_uniform(tuple(self.scale_param.shape), generator,
                                                         self.scale_param.dtype))
            if self.bias is not None:
                self.bias.zero_()

    def extra_repr(self) -> str:
        nd = len(self.kernel_size)
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * nd:
            text += f", padding={self.padding}"
        if self.dilation != (1,) * nd:
            text += f", dilation={self.dilation}"
        if self.output_padding != (0,) * nd:
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        text += f", init={self.weight_init}/{self.init_criterion}"
        if self.rotation:
            text += f", rotation=True, quaternion_format={self.quaternion_format}, scale={self.scale}"
        return text


class QuaternionConv(_QuaternionConvNd):
    """Quaternion convolution y = W ⊗ x (+ bias) on (N, in_channels, *S) inputs in [r|i|j|k] blocks.

    ``in_channels``/``out_channels`` are real counts (multiples of 4). ``operation`` picks 1-D/2-D/3-D.
    ``seed``: None (global torch RNG), an int, or a ``torch.Generator``. ``rotation=True`` uses the rotation
    form (see :func:`functional.rotation_weight`); with ``quaternion_format=False`` inputs/outputs hold
    only the (i, j, k) blocks, 3·in/4 and 3·out/4 channels, and the bias is (3·out/4,).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, init_criterion: str = "glorot",
                 weight_init: str = "quaternion", seed=None, operation: str = "convolution2d",
                 rotation: bool = False, quaternion_format: bool = True, scale: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 0, groups, bias,
                         init_criterion, weight_init, seed, operation, rotation, quaternion_format, scale)

    def forward(self, x: Tensor) -> Tensor:
        weights = (self.r_weight, self.i_weight, self.j_weight, self.k_weight)
        if self.rotation:
            return QF.quaternion_conv_rotation(x, *weights, self.bias, self.stride, self.padding,
                                               self.dilation, self.groups, self.quaternion_format,
                                               self.scale_param)
        return QF.quaternion_conv(x, *weights, self.bias, self.stride, self.padding, self.dilation, self.groups)


class QuaternionTransposeConv(_QuaternionConvNd):
    """Quaternion transposed convolution y = conj(W) ⊗ x (+ bias): the adjoint of :class:`QuaternionConv`
    with the same weights (the authors' behaviour). Weights (in/4, out/4/groups, *k), bias (out,).

    ``rotation=True`` works here (the authors' version raises): it is the adjoint of the rotation conv;
    with ``quaternion_format=False`` (this layer's default, as the authors') tensors hold only the (i, j, k)
    blocks and the bias is (3·out/4,).
    ``scale`` is an addition to the contract signature, for symmetry with :class:`QuaternionConv`.
    """

    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, dilation=1, bias: bool = True, init_criterion: str = "he",
                 weight_init: str = "quaternion", seed=None, operation: str = "convolution2d",
                 rotation: bool = False, quaternion_format: bool = False, scale: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, output_padding,
                         groups, bias, init_criterion, weight_init, seed, operation, rotation,
                         quaternion_format, scale)

    def forward(self, x: Tensor) -> Tensor:
        weights = (self.r_weight, self.i_weight, self.j_weight, self.k_weight)
        if self.rotation:
            return QF.quaternion_transpose_conv_rotation(x, *weights, self.bias, self.stride, self.padding,
                                                         self.output_padding, self.groups, self.dilation,
                                                         self.quaternion_format, self.scale_param)
        return QF.quaternion_transpose_conv(x, *weights, self.bias, self.stride, self.padding,
                                            self.output_padding, self.groups, self.dilation)
