"""Quaternion batch normalisation for (N, C, H, W) inputs: a thin module over
:func:`functional.quaternion_batch_norm`.

State as the authors' (``qbn.py``), in this state_dict order: ``gamma`` (1, C/4, 1, 1), ``beta`` (1, C, 1, 1),
buffers ``moving_var`` and ``moving_mean``. ``eps`` is a plain attribute, not saved. There is no
``num_batches_tracked``.

Buffer shapes depend on ``mode``:

* 'global' (default, the authors'): one scalar mean per component and one shared variance for the whole
  layer; ``moving_mean`` (4,), ``moving_var`` (1,). Loads the authors' weights.
* 'channel': statistics per quaternion channel; ``moving_mean`` (4, C/4) (component × channel),
  ``moving_var`` (C/4,). Same key names, so loading a state_dict of the other mode fails loudly on shape.

>>> bn = QuaternionBatchNorm2d(8)
>>> tuple(bn(torch.randn(2, 8, 5, 5)).shape)
(2, 8, 5, 5)
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from . import functional as QF

__all__ = ["QuaternionBatchNorm2d", "MODES"]

MODES = ("global", "channel")


class QuaternionBatchNorm2d(nn.Module):
    """out_c = gamma · (x_c − μ_c) / sqrt(σ² + eps) + beta_c with σ² the biased mean of |x − μ|².

    Training mode uses batch statistics and updates ``moving_* ← (1 − momentum)·moving_* + momentum·batch``;
    eval mode uses the moving statistics. ``beta_param=False`` keeps beta at zero (requires_grad=False).
    """

    def __init__(self, num_features: int, gamma_init: float = 1.0, beta_param: bool = True,
                 momentum: float = 0.1, eps: float = 1e-5, mode: str = "global"):
        super().__init__()
        q = QF.quaternion_channels(num_features, "QuaternionBatchNorm2d: num_features")
        if mode not in MODES:
            raise ValueError(f"QuaternionBatchNorm2d: mode must be one of {MODES}, got {mode!r}")
        if not isinstance(momentum, (int, float)) or isinstance(momentum, bool) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"QuaternionBatchNorm2d: momentum must be a number in [0, 1], got {momentum!r}")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
            raise ValueError(f"QuaternionBatchNorm2d: eps must be a positive number, got {eps!r}")
        self.num_features = num_features
        self.gamma_init, self.beta_param = float(gamma_init), bool(beta_param)
        self.momentum, self.eps, self.mode = float(momentum), float(eps), mode
        self.gamma = nn.Parameter(torch.full((1, q, 1, 1), self.gamma_init))
        self.beta = nn.Parameter(torch.zeros(1, num_features, 1, 1), requires_grad=self.beta_param)
        var_shape, mean_shape = ((1,), (4,)) if mode == "global" else ((q,), (4, q))
        self.register_buffer("moving_var", torch.ones(var_shape))
        self.register_buffer("moving_mean", torch.zeros(mean_shape))

    def reset_running_stats(self) -> None:
        self.moving_var.fill_(1.0)
        self.moving_mean.zero_()

    def reset_parameters(self) -> None:
        """gamma ← gamma_init, beta ← 0, moving stats ← (mean 0, var 1)."""
        with torch.no_grad():
            self.gamma.fill_(self.gamma_init)
            self.beta.zero_()
        self.reset_running_stats()

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"QuaternionBatchNorm2d: expected input (N, {self.num_features}, H, W), "
                             f"got shape {tuple(x.shape)}")
        return QF.quaternion_batch_norm(x, self.gamma, self.beta, self.moving_mean, self.moving_var,
                                        self.training, self.momentum, self.eps, self.mode)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, mode={self.mode}, momentum={self.momentum}, eps={self.eps}, "
                f"gamma_init={self.gamma_init}, beta_param={self.beta_param}")
