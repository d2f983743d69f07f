"""Input and argument checks shared by every model family.

Models call :func:`check_batch` at the top of ``forward`` so that a wrongly shaped batch fails with one
readable ``ValueError`` naming the model and the expected shape, instead of a shape mismatch deep inside a
convolution or a linear layer.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch


def check_batch(x: object, model: str, channels: int, spatial: Optional[Sequence[int]] = None,
                min_size: int = 1, dtype: Optional[torch.dtype] = None) -> None:
    """Raise ``ValueError`` unless ``x`` is a floating-point tensor of shape (N, channels, H, W).

    ``spatial`` = (H, W) pins the spatial size; otherwise any H, W >= ``min_size`` is accepted.
    ``dtype`` (the model's parameter dtype) must match exactly when given, except under autocast.

    >>> check_batch(torch.zeros(2, 1, 512, 128), 'RHemo', 1, (512, 128))
    >>> check_batch(torch.zeros(2, 4, 64, 64), 'RHemo', 1, (512, 128))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: RHemo: expected a float tensor of shape (N, 1, 512, 128), got shape (2, 4, 64, 64) and ...
    """
    if spatial is None:
        hw = "H, W" if min_size <= 1 else f"H>={min_size}, W>={min_size}"
    else:
        hw = ", ".join(str(int(s)) for s in spatial)
    expected = f"(N, {channels}, {hw})"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{model}: expected a float tensor of shape {expected}, got {type(x).__name__}")
    ok = x.dim() == 4 and x.shape[0] >= 1 and x.shape[1] == channels and torch.is_floating_point(x)
    if ok and spatial is not None:
        ok = tuple(x.shape[2:]) == tuple(int(s) for s in spatial)
    elif ok:
        ok = min(x.shape[2:]) >= min_size
    if not ok:
        raise ValueError(f"{model}: expected a float tensor of shape {expected}, got shape {tuple(x.shape)} "
                         f"and dtype {x.dtype}")
    # Under autocast a lower-precision input (e.g. bf16 embeddings) is legitimate: autocast casts per op.
    if dtype is not None and x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(f"{model}: input dtype {x.dtype} does not match the model's parameters ({dtype}); "
                         f"convert with x.to({dtype}) or the model with .to({x.dtype})")


def check_in_channels(in_channels: Optional[int], quat: bool, model: str) -> int:
    """Resolve the number of input channels: ``None`` → 4 (quaternion net) or 1 (real net).

    A quaternion network needs a multiple of 4 (whole quaternions).

    >>> check_in_channels(None, True, 'AlexNet'), check_in_channels(None, False, 'AlexNet')
    (4, 1)
    """
    if in_channels is None:
        return 4 if quat else 1
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"{model}: in_channels must be a positive int, got {in_channels!r}")
    if quat and in_channels % 4:
        raise ValueError(f"{model}: a quaternion network needs in_channels divisible by 4, got {in_channels}")
    return in_channels


def check_positive_int(value: object, name: str, model: str) -> int:
    """Return ``value`` if it is a positive int, else raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{model}: {name} must be a positive int, got {value!r}")
    return value


def check_dropout(p: object, model: str) -> float:
    """Return ``p`` as float if 0 <= p <= 1, else raise ``ValueError``."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{model}: classifier_dropout must be a number in [0, 1], got {p!r}")
    return float(p)


def check_classifier(hidden_size: object, classifier_dropout: object, quat: bool, model: str) -> tuple[int, float]:
    """Validated (hidden_size, dropout) of an MLP classifier; quaternion hidden layers need a multiple of 4."""
    hidden = check_positive_int(hidden_size, "hidden_size", model)
    p = check_dropout(classifier_dropout, model)
    if quat and hidden % 4:
        raise ValueError(f"{model}: hidden_size must be divisible by 4 when quat=True, got {hidden}")
    return hidden, p
