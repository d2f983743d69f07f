"""Quaternion fully-connected layer: a thin ``nn.Module`` over :func:`functional.quaternion_linear`.

Parameters as the authors': ``r_weight, i_weight, j_weight, k_weight`` (in/4, out/4) and ``bias`` (out,).

>>> fc = QuaternionLinear(16, 8)
>>> tuple(fc(torch.randn(3, 16)).shape), tuple(fc(torch.randn(5, 3, 16)).shape)
((3, 8), (5, 3, 8))
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from . import functional as QF

__all__ = ["QuaternionLinear"]


class QuaternionLinear(nn.Module):
    """y = W ⊗ x + bias on (..., in_features) inputs whose last dim holds [r|i|j|k] blocks.

    ``in_features``/``out_features`` are real counts (multiples of 4). ``seed``: None (global torch RNG), an
    int, or a ``torch.Generator``. All three weight inits are accepted (the authors' accepted only
    'quaternion' and 'unitary'). The authors' custom autograd Function is unnecessary: plain autograd gives
    the same gradients.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init_criterion: str = "he",
                 weight_init: str = "quaternion", seed=None):
        super().__init__()
        in_q = QF.quaternion_channels(in_features, "QuaternionLinear: in_features")
        out_q = QF.quaternion_channels(out_features, "QuaternionLinear: out_features")
        if init_criterion not in QF.CRITERIA:
            raise ValueError(f"QuaternionLinear: init_criterion must be one of {QF.CRITERIA}, "
                             f"got {init_criterion!r}")
        if weight_init not in QF.WEIGHT_INITS:
            raise ValueError(f"QuaternionLinear: weight_init must be one of {sorted(QF.WEIGHT_INITS)}, "
                             f"got {weight_init!r}")
        self.in_features, self.out_features = in_features, out_features
        self.init_criterion, self.weight_init = init_criterion, weight_init
        for part in "rijk":
            self.register_parameter(f"{part}_weight", nn.Parameter(torch.empty(in_q, out_q)))
        self.register_parameter("bias", nn.Parameter(torch.empty(out_features)) if bias else None)
        self.reset_parameters(QF.as_generator(seed))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw the weights (the configured init, quaternion-unit fans) and zero the bias."""
        QF.init_weights_(self.r_weight, self.i_weight, self.j_weight, self.k_weight, "linear", self.weight_init,
                         self.init_criterion, generator)
        with torch.no_grad():
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return QF.quaternion_linear(x, self.r_weight, self.i_weight, self.j_weight, self.k_weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, init={self.weight_init}/{self.init_criterion}")
