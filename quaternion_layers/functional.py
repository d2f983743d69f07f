"""Quaternion layer maths as plain tensor functions (no ``nn.Module``).

Channel convention (the authors'): a real tensor with ``C`` channels holds ``C/4`` quaternion channels stored
as four contiguous blocks ``[r | i | j | k]`` along the channel axis (dim 1 for conv/BN inputs, the last dim
for linear inputs). Every layer keeps four real weight tensors ``r, i, j, k`` (written R, I, J, K below).

Conventions implemented here:

* conv:            y = W ⊗ x. The real weight (out, in/groups, *k) has block rows = output components::

                       [[R, -I, -J, -K],
                        [I,  R, -K,  J],
                        [J,  K,  R, -I],
                        [K, -J,  I,  R]]

* transposed conv: the same block pattern laid out as (in, out/groups, *k) and run through
                   ``conv_transpose``, so y = conj(W) ⊗ x: the exact adjoint of the conv with the same weights
                   (this is what the authors' layer does, so their weights load unchanged).
* linear:          weights (in/4, out/4); y = x @ M + b with M the transpose of the conv pattern, i.e. y = W ⊗ x.
* rotation form:   each weight quaternion is normalised, ``q̂ = q / sqrt(|q|² + eps)``, and becomes a 3×3
                   rotation matrix acting on the (i, j, k) parts per tap; with ``quaternion_format=True`` the
                   real input and output blocks are zero, otherwise tensors hold only the 3 blocks (i, j, k).

Grouped convolutions group *quaternion* channels: ``in/4`` and ``out/4`` must be divisible by ``groups`` and
the quaternion weights are (out/4, in/4/groups, *k) (conv) or (in/4, out/4/groups, *k) (transposed conv).
The authors' code never used groups; because their real-channel layout is component-major, the channels are
regrouped internally for ``groups > 1``.

Everything is differentiable with ordinary autograd.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "HAMILTON_PATTERN",
    "hamilton_product",
    "hamilton_conv_weight",
    "hamilton_transpose_conv_weight",
    "hamilton_linear_weight",
    "rotation_weight",
    "quaternion_conv",
    "quaternion_transpose_conv",
    "quaternion_conv_rotation",
    "quaternion_transpose_conv_rotation",
    "quaternion_linear",
    "quaternion_batch_norm",
    "weight_fans",
    "init_scale",
    "quaternion_init",
    "unitary_init",
    "random_init",
    "xavier_uniform",
    "WEIGHT_INITS",
    "init_weights_",
    "CRITERIA",
    "as_generator",
    "quaternion_channels",
]

# HAMILTON_PATTERN[a][b] = (index into (R, I, J, K), sign) of the block mapping input component b to output
# component a in y = W ⊗ x. The single source of the Hamilton sign pattern for every layer type.
HAMILTON_PATTERN: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, 1), (1, -1), (2, -1), (3, -1)),
    ((1, 1), (0, 1), (3, -1), (2, 1)),
    ((2, 1), (3, 1), (0, 1), (1, -1)),
    ((3, 1), (2, -1), (1, 1), (0, 1)),
)

CRITERIA = ("glorot", "he")
ROTATION_EPS = 1e-4
AXIS_EPS = 1e-4


# ----------------------------------------------------------------------------------------------- helpers
def _check_quaternion_weights(r: Tensor, i: Tensor, j: Tensor, k: Tensor, min_dim: int, what: str) -> None:
    for name, t in (("i", i), ("j", j), ("k", k)):
        if t.shape != r.shape:
            raise ValueError(f"{what}: {name} weight has shape {tuple(t.shape)}, expected the r weight's shape "
                             f"{tuple(r.shape)}")
    if r.dim() < min_dim:
        raise ValueError(f"{what}: weights must have at least {min_dim} dims, got shape {tuple(r.shape)}")


def _ntuple(value, n: int, name: str, minimum: int) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    if isinstance(value, int):
        out = (value,) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        out = tuple(value)
    else:
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    if any(v < minimum for v in out):
        raise ValueError(f"{name} entries must be >= {minimum}, got {value!r}")
    return out


def _to_group_major(x: Tensor, ncomp: int, groups: int) -> Tensor:
    """(N, ncomp*C, *S) component-major → (N, groups*ncomp*C/groups, *S) group-major channels."""
    n, c = x.shape[:2]
    return x.reshape(n, ncomp, groups, c // (ncomp * groups), *x.shape[2:]).transpose(1, 2).reshape(x.shape)


def _to_component_major(x: Tensor, ncomp: int, groups: int) -> Tensor:
    n, c = x.shape[:2]
    return x.reshape(n, groups, ncomp, c // (ncomp * groups), *x.shape[2:]).transpose(1, 2).reshape(x.shape)


def _assemble_blocks(blocks: Sequence[Sequence[Tensor]], groups: int) -> Tensor:
    """Lay out an (A × B) grid of equal blocks (G·o, i, *k) as one real weight (A·G·o, B·i, *k).

    For ``groups > 1`` the rows are ordered group-major, (group, component, o), which is what F.conv* expects
    once the input channels are regrouped the same way.
    """
    na, nb = len(blocks), len(blocks[0])
    first = blocks[0][0]
    go, i_, kernel = first.shape[0], first.shape[1], first.shape[2:]
    stacked = torch.stack([b for row in blocks for b in row])
    stacked = stacked.view(na, nb, groups, go // groups, i_, *kernel)
    # (a, b, g, o, i, *k) -> (g, a, o, b, i, *k)
    stacked = stacked.permute(2, 0, 3, 1, 4, *range(5, 5 + len(kernel)))
    return stacked.reshape(na * go, nb * i_, *kernel)


# ------------------------------------------------------------------------------------- Hamilton product
def hamilton_product(q: Tensor, p: Tensor, dim: int = 1) -> Tensor:
    """Elementwise Hamilton product q ⊗ p of block-split quaternion tensors.

    ``q`` and ``p`` hold [r | i | j | k] blocks along ``dim`` (size divisible by 4) and must broadcast
    against each other after splitting. Returns the product in the same layout.

    >>> q = torch.tensor([[0., 1., 0., 0.]]); p = torch.tensor([[0., 0., 1., 0.]])
    >>> hamilton_product(q, p, dim=1)          # i ⊗ j = k
    tensor([[0., 0., 0., 1.]])
    """
    for name, t in (("q", q), ("p", p)):
        if t.dim() == 0 or t.shape[dim] % 4:
            raise ValueError(f"hamilton_product: {name} must have a size divisible by 4 along dim {dim}, "
                             f"got shape {tuple(t.shape)}")
    qr, qi, qj, qk = q.chunk(4, dim)
    pr, pi, pj, pk = p.chunk(4, dim)
    return torch.cat([
        qr * pr - qi * pi - qj * pj - qk * pk,
        qr * pi + qi * pr + qj * pk - qk * pj,
        qr * pj - qi * pk + qj * pr + qk * pi,
        qr * pk + qi * pj - qj * pi + qk * pr,
    ], dim)


# -------------------------------------------------------------------------------------- weight assembly
def hamilton_conv_weight(r: Tensor, i: Tensor, j: Tensor, k: Tensor, groups: int = 1) -> Tensor:
    """Real conv weight of y = W ⊗ x from quaternion weights (out/4, in/4/groups, *k).

    Returns (out, in/groups, *k) with block rows = output components (pattern in the module docstring);
    rows are ordered group-major when ``groups > 1``.

    >>> w = hamilton_conv_weight(*torch.randn(4, 2, 3, 5, 5))
    >>> tuple(w.shape)
    (8, 12, 5, 5)
    """
    _check_quaternion_weights(r, i, j, k, 2, "hamilton_conv_weight")
    if r.shape[0] % groups:
        raise ValueError(f"hamilton_conv_weight: first weight dim {r.shape[0]} must be divisible by "
                         f"groups={groups}")
    weights = (r, i, j, k)
    negated = (None, -i, -j, -k)
    blocks = [[weights[idx] if sign > 0 else negated[idx] for idx, sign in row] for row in HAMILTON_PATTERN]
    return _assemble_blocks(blocks, groups)


def hamilton_transpose_conv_weight(r: Tensor, i: Tensor, j: Tensor, k: Tensor, groups: int = 1) -> Tensor:
    """Real transposed-conv weight from quaternion weights (in/4, out/4/groups, *k).

    The same block pattern as :func:`hamilton_conv_weight` in the (in, out/groups, *k) layout of
    ``conv_transpose``, so the layer computes conj(W) ⊗ x, the adjoint of the conv with the same weights.
    """
    return hamilton_conv_weight(r, i, j, k, groups)


def hamilton_linear_weight(r: Tensor, i: Tensor, j: Tensor, k: Tensor) -> Tensor:
    """Real matrix M (in, out) with x @ M = W ⊗ x, from quaternion weights (in/4, out/4).

    M is the transpose of the conv pattern built from the transposed blocks. :func:`quaternion_linear` does
    not materialise M (it is slower); this is the reference form.
    """
    _check_quaternion_weights(r, i, j, k, 2, "hamilton_linear_weight")
    if r.dim() != 2:
        raise ValueError(f"hamilton_linear_weight: weights must be 2-D (in/4, out/4), got {tuple(r.shape)}")
    return hamilton_conv_weight(r.t(), i.t(), j.t(), k.t()).t()


def rotation_weight(r: Tensor, i: Tensor, j: Tensor, k: Tensor, quaternion_format: bool = True,
                    scale: Tensor | None = None, groups: int = 1, eps: float = ROTATION_EPS) -> Tensor:
    """Real weight of the rotation form: every tap rotates the (i, j, k) part by its weight quaternion.

    Weights (A, B, *k) → (4A, 4B, *k) with zero real row/column blocks if ``quaternion_format`` else
    (3A, 3B, *k). The quaternion is normalised as q / sqrt(|q|² + eps) (so it is only nearly unit) and its
    rotation matrix ``[[1-2(j²+k²), 2(ij-rk), 2(ik+rj)], [2(ij+rk), 1-2(i²+k²), 2(jk-ri)],
    [2(ik-rj), 2(jk+ri), 1-2(i²+j²)]]`` fills the 3×3 blocks; ``scale`` (same shape as r) multiplies them.
    Used for conv (A, B) = (out/4, in/4/g) and for transposed conv (in/4, out/4/g), where the transposed
    layout makes the layer the adjoint (rotation by the conjugate).
    """
    _check_quaternion_weights(r, i, j, k, 2, "rotation_weight")
    if scale is not None and scale.shape != r.shape:
        raise ValueError(f"rotation_weight: scale has shape {tuple(scale.shape)}, expected {tuple(r.shape)}")
    if r.shape[0] % groups:
        raise ValueError(f"rotation_weight: first weight dim {r.shape[0]} must be divisible by groups={groups}")
    inv = torch.rsqrt(r * r + i * i + j * j + k * k + eps)
    a, b, c, d = r * inv, i * inv, j * inv, k * inv
    m = [
        [1 - 2 * (c * c + d * d), 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), 1 - 2 * (b * b + d * d), 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), 1 - 2 * (b * b + c * c)],
    ]
    if scale is not None:
        m = [[e * scale for e in row] for row in m]
    if quaternion_format:
        zero = torch.zeros_like(r)
        m = [[zero] * 4] + [[zero] + row for row in m]
    return _assemble_blocks(m, groups)


# -------------------------------------------------------------------------------------------- convolution
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_TCONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _check_conv_input(x: Tensor, nd: int, expected_channels: int, what: str) -> None:
    if x.dim() != nd + 2:
        layout = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[nd]
        raise ValueError(f"{what}: expected a {nd + 2}-D input {layout} for a {nd}-D convolution, "
                         f"got shape {tuple(x.shape)}")
    if x.shape[1] != expected_channels:
        raise ValueError(f"{what}: expected {expected_channels} input channels, got {x.shape[1]} "
                         f"(input shape {tuple(x.shape)})")


def _check_bias(bias: Tensor | None, expected: int, what: str) -> None:
    if bias is not None and tuple(bias.shape) != (expected,):
        raise ValueError(f"{what}: bias must have shape ({expected},), got {tuple(bias.shape)}")


def _run_conv(x: Tensor, weight: Tensor, bias: Tensor | None, *, ncomp: int, in_q: int, out_q: int,
              groups: int, transposed: bool, stride, padding, dilation, output_padding, what: str) -> Tensor:
    """Validate, regroup channels for groups > 1, and call the real (transposed) convolution."""
    nd = weight.dim() - 2
    if nd not in _CONV:
        raise ValueError(f"{what}: weights must have 3, 4 or 5 dims (1-D/2-D/3-D conv), got {weight.dim()}")
    if not isinstance(groups, int) or groups < 1 or in_q % groups or out_q % groups:
        raise ValueError(f"{what}: groups must be a positive int dividing in/4={in_q} and out/4={out_q}, "
                         f"got {groups!r}")
    _check_conv_input(x, nd, ncomp * in_q, what)
    _check_bias(bias, ncomp * out_q, what)
    kernel = tuple(weight.shape[2:])
    stride = _ntuple(stride, nd, "stride", 1)
    dilation = _ntuple(dilation, nd, "dilation", 1)
    spatial = x.shape[2:]
    if transposed:
        padding = _ntuple(padding, nd, "padding", 0)
        output_padding = _ntuple(output_padding, nd, "output_padding", 0)
        for op, s, dl in zip(output_padding, stride, dilation):
            if op >= max(s, dl):
                raise ValueError(f"{what}: output_padding {output_padding} must be smaller than stride "
                                 f"{stride} or dilation {dilation}")
        out = [(n - 1) * s - 2 * p + dl * (kk - 1) + op + 1
               for n, s, p, dl, kk, op in zip(spatial, stride, padding, dilation, kernel, output_padding)]
    elif isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{what}: padding string must be 'same' or 'valid', got {padding!r}")
        if padding == "same" and any(s != 1 for s in stride):
            raise ValueError(f"{what}: padding='same' needs stride 1, got stride {stride}")
        out = list(spatial) if padding == "same" else [
            (n - dl * (kk - 1) - 1) // s + 1 for n, s, dl, kk in zip(spatial, stride, dilation, kernel)]
    else:
        padding = _ntuple(padding, nd, "padding", 0)
        out = [(n + 2 * p - dl * (kk - 1) - 1) // s + 1
               for n, s, p, dl, kk in zip(spatial, stride, padding, dilation, kernel)]
    if any(o < 1 for o in out):
        raise ValueError(f"{what}: input spatial size {tuple(spatial)} gives an empty output {tuple(out)} "
                         f"(kernel {kernel}, stride {stride}, padding {padding}, dilation {dilation})")

    if groups > 1:
        x = _to_group_major(x, ncomp, groups)
        if bias is not None:
            bias = _to_group_major(bias.view(1, -1), ncomp, groups).view(-1)
    if transposed:
        y = _TCONV[nd](x, weight, bias, stride, padding, output_padding, groups, dilation)
    else:
        y = _CONV[nd](x, weight, bias, stride, padding, dilation, groups)
    if groups > 1:
        y = _to_component_major(y, ncomp, groups)
    return y


def quaternion_conv(x: Tensor, r: Tensor, i: Tensor, j: Tensor, k: Tensor, bias: Tensor | None = None,
                    stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """Quaternion convolution y = W ⊗ x (+ bias), 1-D/2-D/3-D by the weight rank.

    x: (N, 4·in/4, *S); r, i, j, k: (out/4, in/4/groups, *k); bias: (out,) or None → (N, out, *S').

    >>> x = torch.randn(2, 8, 5, 5); w = torch.randn(4, 3, 2, 3, 3)
    >>> tuple(quaternion_conv(x, *w, padding=1).shape)
    (2, 12, 5, 5)
    """
    _check_quaternion_weights(r, i, j, k, 3, "quaternion_conv")
    return _run_conv(x, hamilton_conv_weight(r, i, j, k, groups), bias, ncomp=4, in_q=r.shape[1] * groups,
                     out_q=r.shape[0], groups=groups, transposed=False, stride=stride, padding=padding,
                     dilation=dilation, output_padding=0, what="quaternion_conv")


def quaternion_transpose_conv(x: Tensor, r: Tensor, i: Tensor, j: Tensor, k: Tensor,
                              bias: Tensor | None = None, stride=1, padding=0, output_padding=0,
                              groups: int = 1, dilation=1) -> Tensor:
    """Quaternion transposed convolution y = conj(W) ⊗ x (+ bias): the adjoint of :func:`quaternion_conv`.

    x: (N, 4·in/4, *S); r, i, j, k: (in/4, out/4/groups, *k); bias: (out,) or None → (N, out, *S').
    Argument order follows ``F.conv_transpose2d``.
    """
    _check_quaternion_weights(r, i, j, k, 3, "quaternion_transpose_conv")
    return _run_conv(x, hamilton_transpose_conv_weight(r, i, j, k, groups), bias, ncomp=4, in_q=r.shape[0],
                     out_q=r.shape[1] * groups, groups=groups, transposed=True, stride=stride, padding=padding,
                     dilation=dilation, output_padding=output_padding, what="quaternion_transpose_conv")


def quaternion_conv_rotation(x: Tensor, r: Tensor, i: Tensor, j: Tensor, k: Tensor,
                             bias: Tensor | None = None, stride=1, padding=0, dilation=1, groups: int = 1,
                             quaternion_format: bool = True, scale: Tensor | None = None,
                             eps: float = ROTATION_EPS) -> Tensor:
    """Rotation-form quaternion conv: each tap rotates the input's (i, j, k) part by its weight quaternion.

    x: (N, c·in/4, *S) with c = 4 if ``quaternion_format`` (the real input block is ignored and the real
    output block is only the bias) else c = 3 (blocks i, j, k only); weights (out/4, in/4/groups, *k);
    bias (c·out/4,) or None; scale None or the weights' shape.
    """
    _check_quaternion_weights(r, i, j, k, 3, "quaternion_conv_rotation")
    weight = rotation_weight(r, i, j, k, quaternion_format, scale, groups, eps)
    return _run_conv(x, weight, bias, ncomp=4 if quaternion_format else 3, in_q=r.shape[1] * groups,
                     out_q=r.shape[0], groups=groups, transposed=False, stride=stride, padding=padding,
                     dilation=dilation, output_padding=0, what="quaternion_conv_rotation")


def quaternion_transpose_conv_rotation(x: Tensor, r: Tensor, i: Tensor, j: Tensor, k: Tensor,
                                       bias: Tensor | None = None, stride=1, padding=0, output_padding=0,
                                       groups: int = 1, dilation=1, quaternion_format: bool = False,
                                       scale: Tensor | None = None, eps: float = ROTATION_EPS) -> Tensor:
    """Rotation-form transposed conv, the adjoint of :func:`quaternion_conv_rotation` (rotation by conj(q)).

    x: (N, c·in/4, *S) with c = 4 if ``quaternion_format`` else 3; weights (in/4, out/4/groups, *k);
    bias (c·out/4,) or None. (The authors' version of this cannot run; this one works.)
    """
    _check_quaternion_weights(r, i, j, k, 3, "quaternion_transpose_conv_rotation")
    weight = rotation_weight(r, i, j, k, quaternion_format, scale, groups, eps)
    return _run_conv(x, weight, bias, ncomp=4 if quaternion_format else 3, in_q=r.shape[0],
                     out_q=r.shape[1] * groups, groups=groups, transposed=True, stride=stride, padding=padding,
                     dilation=dilation, output_padding=output_padding, what="quaternion_transpose_conv_rotation")


# ------------------------------------------------------------------------------------------------ linear
@lru_cache(maxsize=None)
def _linear_mixing(dtype: torch.dtype, device: torch.device) -> Tensor:
    """(4, 16) signs S with y_a = Σ_{b,w} S[a, 4b+w] · (x_b @ W_w), from HAMILTON_PATTERN."""
    s = torch.zeros(4, 16, dtype=dtype)
    for a, row in enumerate(HAMILTON_PATTERN):
        for b, (w, sign) in enumerate(row):
            s[a, 4 * b + w] = sign
    return s.to(device)


def quaternion_linear(x: Tensor, r: Tensor, i: Tensor, j: Tensor, k: Tensor,
                      bias: Tensor | None = None) -> Tensor:
    """Quaternion fully-connected layer y = W ⊗ x + bias (= x @ hamilton_linear_weight(...) + bias).

    x: (..., in) with in = 4·in/4 in [r|i|j|k] blocks; r, i, j, k: (in/4, out/4); bias (out,) → (..., out).

    Computed without the (in, out) matrix: the four input blocks are stacked as rows, multiplied by each of
    R, I, J, K (in/4, out/4), and the 16 partial products mixed with the Hamilton signs. Same FLOPs as a
    real layer but a quarter of the weight memory traffic, which dominates at the usual small batch sizes.

    >>> tuple(quaternion_linear(torch.randn(5, 8), *torch.randn(4, 2, 3)).shape)
    (5, 12)
    """
    _check_quaternion_weights(r, i, j, k, 2, "quaternion_linear")
    if r.dim() != 2:
        raise ValueError(f"quaternion_linear: weights must be 2-D (in/4, out/4), got {tuple(r.shape)}")
    in_q, out_q = r.shape
    if x.dim() < 1 or x.shape[-1] != 4 * in_q:
        raise ValueError(f"quaternion_linear: expected input (..., {4 * in_q}), got shape {tuple(x.shape)}")
    _check_bias(bias, 4 * out_q, "quaternion_linear")
    lead = x.shape[:-1]
    rows = x.reshape(-1, in_q)                                   # (N·4, in/4): row n·4+b = x_b of sample n
    # one product per weight component (no concatenated weight: its copy and the strided weight
    # gradients it causes cost more than the extra calls)
    partial = torch.stack([rows @ w for w in (r, i, j, k)], 1)   # (N·4, 4, out/4): x_b @ W_w
    n = rows.shape[0] // 4                                       # explicit, so an empty batch works too
    mixed = _linear_mixing(partial.dtype, partial.device) @ partial.view(n, 16, out_q)    # (N, 4, out/4)
    y = mixed.view(*lead, 4 * out_q)
    return y if bias is None else y + bias


# ---------------------------------------------------------------------------------------------- batch norm
def quaternion_batch_norm(x: Tensor, gamma: Tensor, beta: Tensor | None, moving_mean: Tensor,
                          moving_var: Tensor, training: bool, momentum: float = 0.1, eps: float = 1e-5,
                          mode: str = "global") -> Tensor:
    """Quaternion batch norm: out_c = gamma · (x_c − μ_c) / sqrt(σ² + eps) + beta_c.

    x: (N, C, *S), C = 4·Q; gamma (1, Q, 1, 1) (any shape with Q elements); beta (1, C, 1, 1) or None.
    σ² is the biased mean of |x − μ|² = Σ_c (x_c − μ_c)², one variance shared by the four components.

    * mode='global' (authors'): μ (4,) one scalar per component over N, Q, S; σ² one scalar.
      Buffers moving_mean (4,), moving_var (1,).
    * mode='channel': statistics per quaternion channel over N, S. μ (4, Q); σ² (Q,).
      Buffers moving_mean (4, Q), moving_var (Q,).

    ``training=True`` uses batch statistics and updates the buffers in place,
    moving ← (1 − momentum)·moving + momentum·batch_stat; otherwise the buffers are used. Gradients flow in
    both cases (the authors' eval path ran under no_grad; that only matters for fine-tuning in eval mode).
    """
    if mode not in ("global", "channel"):
        raise ValueError(f"quaternion_batch_norm: mode must be 'global' or 'channel', got {mode!r}")
    if x.dim() < 2 or x.shape[1] % 4:
        raise ValueError(f"quaternion_batch_norm: expected input (N, C, ...) with C divisible by 4, "
                         f"got shape {tuple(x.shape)}")
    n, c = x.shape[:2]
    q = c // 4
    if gamma.numel() != q:
        raise ValueError(f"quaternion_batch_norm: gamma must have {q} elements, got shape {tuple(gamma.shape)}")
    if beta is not None and beta.numel() != c:
        raise ValueError(f"quaternion_batch_norm: beta must have {c} elements, got shape {tuple(beta.shape)}")
    mean_shape, var_shape = ((4,), (1,)) if mode == "global" else ((4, q), (q,))
    if tuple(moving_mean.shape) != mean_shape or tuple(moving_var.shape) != var_shape:
        raise ValueError(f"quaternion_batch_norm: mode {mode!r} needs moving_mean {mean_shape} and moving_var "
                         f"{var_shape}, got {tuple(moving_mean.shape)} and {tuple(moving_var.shape)}")

    xq = x.reshape(n, 4, q, -1)
    dims = (0, 2, 3) if mode == "global" else (0, 3)
    if training:
        mean = xq.mean(dim=dims)                                 # (4,) or (4, Q)
        delta = xq - (mean.view(1, 4, 1, 1) if mode == "global" else mean.view(1, 4, q, 1))
        var = delta.square().mean(dim=dims).sum(0)               # () or (Q,)
        with torch.no_grad():
            moving_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            moving_var.mul_(1 - momentum).add_(var.detach().reshape(var_shape), alpha=momentum)
    else:
        mean, var = moving_mean, moving_var
        delta = xq - (mean.view(1, 4, 1, 1) if mode == "global" else mean.view(1, 4, q, 1))
    inv_std = torch.rsqrt(var + eps)
    factor = gamma.reshape(1, 1, q, 1) * (inv_std if mode == "global" else inv_std.view(1, 1, q, 1))
    out = delta * factor
    if beta is not None:
        out = out + beta.reshape(1, 4, q, 1)
    return out.reshape(x.shape)


# -------------------------------------------------------------------------------------------------- init
def weight_fans(shape: Sequence[int], layout: str) -> tuple[int, int]:
    """Quaternion-unit fans (fan_in, fan_out) of a quaternion weight of ``shape``.

    * 'conv': shape (out/4, in/4/g, *k) → (in/4/g · Πk, out/4 · Πk)
    * 'transpose': shape (in/4, out/4/g, *k) → (out/4/g · Πk, in/4 · Πk): the authors' swapped roles
      (their init receives out/4 as "in"), kept so 'he' gives the same scale.
    * 'linear': shape (in/4, out/4) → (in/4, out/4).
    """
    shape = tuple(shape)
    if layout == "linear":
        if len(shape) != 2:
            raise ValueError(f"weight_fans: 'linear' needs a 2-D shape (in/4, out/4), got {shape}")
        return shape[0], shape[1]
    if layout not in ("conv", "transpose"):
        raise ValueError(f"weight_fans: layout must be 'conv', 'transpose' or 'linear', got {layout!r}")
    if len(shape) < 3:
        raise ValueError(f"weight_fans: '{layout}' needs a shape (a, b, *kernel), got {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def init_scale(fan_in: int, fan_out: int, criterion: str) -> float:
    """s = 1/sqrt(2(fan_in + fan_out)) for 'glorot', 1/sqrt(2 fan_in) for 'he' (quaternion-unit fans)."""
    if criterion == "glorot":
        return 1.0 / math.sqrt(2 * (fan_in + fan_out))
    if criterion == "he":
        return 1.0 / math.sqrt(2 * fan_in)
    raise ValueError(f"init criterion must be one of {CRITERIA}, got {criterion!r}")


def _init_args(shape, generator, dtype) -> tuple[tuple[int, ...], torch.dtype]:
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"init: shape must be non-empty with positive sizes, got {shape}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"init: generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"init: generator must live on the CPU, got device {generator.device}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not dtype.is_floating_point:
        raise ValueError(f"init: dtype must be a floating point dtype, got {dtype}")
    return shape, dtype


def _uniform_components(shape, generator, dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Four independent U(-1, 1) tensors (separate storages, so each can become its own Parameter)."""
    return tuple(torch.rand(shape, generator=generator, dtype=dtype).mul_(2).sub_(1) for _ in range(4))


def quaternion_init(shape: Sequence[int], fan_in: int, fan_out: int, criterion: str = "glorot",
                    generator: torch.Generator | None = None, dtype: torch.dtype | None = None
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Parcollet's polar quaternion init, vectorised. Returns (r, i, j, k), each of ``shape``, on the CPU.

    Per quaternion: modulus ~ chi(4)·s (the norm of a 4-D standard normal, times s), axis u ~ U(-1,1)³
    divided by sqrt(|u|² + 1e-4) (nearly unit, as the authors'), phase ~ U(-π, π);
    r = mod·cos(phase), (i, j, k) = mod·sin(phase)·u. Hence E[r² + i² + j² + k²] ≈ 4s².
    Draw order from ``generator`` (or the global torch RNG): normals (4, *shape), axis (3, *shape), phase.

    >>> r, i, j, k = quaternion_init((16, 8), 16, 8, 'he', torch.Generator().manual_seed(0))
    """
    shape, dtype = _init_args(shape, generator, dtype)
    s = init_scale(fan_in, fan_out, criterion)
    # chi(4)·s = s·‖4-D standard normal‖ (sum over the outer dim: much faster than linalg.vector_norm here)
    modulus = torch.randn((4,) + shape, generator=generator, dtype=dtype).square_().sum(0).sqrt_().mul_(s)
    axis = torch.rand((3,) + shape, generator=generator, dtype=dtype).mul_(2).sub_(1)
    axis.div_(axis.square().sum(0).add_(AXIS_EPS).sqrt_())
    phase = torch.rand(shape, generator=generator, dtype=dtype).mul_(2 * math.pi).sub_(math.pi)
    r = torch.cos(phase).mul_(modulus)
    imag = torch.sin(phase).mul_(modulus)
    return r, axis[0] * imag, axis[1] * imag, axis[2] * imag


def unitary_init(shape: Sequence[int], fan_in: int = 1, fan_out: int = 1, criterion: str = "glorot",
                 generator: torch.Generator | None = None, dtype: torch.dtype | None = None
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Unit quaternions: U(-1,1)⁴ divided by its norm. Like the authors', the criterion is validated but
    its scale s is NOT applied (weights have norm 1 whatever the fans)."""
    shape, dtype = _init_args(shape, generator, dtype)
    init_scale(fan_in, fan_out, criterion)
    v = _uniform_components(shape, generator, dtype)
    inv = torch.rsqrt(sum(t.square() for t in v).clamp_min_(torch.finfo(dtype).tiny))
    return tuple(t.mul_(inv) for t in v)


def random_init(shape: Sequence[int], fan_in: int = 1, fan_out: int = 1, criterion: str = "glorot",
                generator: torch.Generator | None = None, dtype: torch.dtype | None = None
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every component U(-1, 1). Faithful to the authors: the criterion's scale s is computed (validated)
    but NOT applied, so weights lie in [-1, 1] regardless of layer size."""
    shape, dtype = _init_args(shape, generator, dtype)
    init_scale(fan_in, fan_out, criterion)
    return _uniform_components(shape, generator, dtype)


def xavier_uniform(shape: Sequence[int], generator: torch.Generator | None = None,
                   dtype: torch.dtype | None = None) -> Tensor:
    """U(-a, a), a = sqrt(6/(fan_in + fan_out)) with torch's fans of ``shape`` (fan_in = shape[1]·Πk,
    fan_out = shape[0]·Πk): the init of the rotation ``scale_param``."""
    shape, dtype = _init_args(shape, generator, dtype)
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    fan_in = (shape[1] if len(shape) > 1 else shape[0]) * receptive
    fan_out = shape[0] * receptive
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return torch.rand(shape, generator=generator, dtype=dtype).mul_(2 * bound).sub_(bound)


WEIGHT_INITS: dict[str, Callable[..., tuple[Tensor, Tensor, Tensor, Tensor]]] = {
    "quaternion": quaternion_init,
    "unitary": unitary_init,
    "random": random_init,
}


@torch.no_grad()
def init_weights_(r: Tensor, i: Tensor, j: Tensor, k: Tensor, layout: str, weight_init: str = "quaternion",
                  criterion: str = "glorot", generator: torch.Generator | None = None) -> None:
    """Fill the four component weights in place (like ``torch.nn.init.*_``) with ``WEIGHT_INITS[weight_init]``,
    using the quaternion-unit fans of ``layout`` ('conv', 'transpose' or 'linear', see :func:`weight_fans`)."""
    shape = tuple(r.shape)
    fan_in, fan_out = weight_fans(shape, layout)
    values = WEIGHT_INITS[weight_init](shape, fan_in, fan_out, criterion, generator, r.dtype)
    for param, value in zip((r, i, j, k), values):
        param.copy_(value)


# ------------------------------------------------------------------------------- module argument helpers
def as_generator(seed) -> torch.Generator | None:
    """``seed`` → the generator an init draws from: None → None (the global torch RNG), an int → a fresh
    CPU generator seeded with it, a ``torch.Generator`` → itself."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, int) and not isinstance(seed, bool):
        return torch.Generator().manual_seed(seed)
    raise ValueError(f"seed must be None, an int or a torch.Generator, got {seed!r}")


def quaternion_channels(value, name: str) -> int:
    """Number of quaternions in a real channel/feature count; ValueError unless a positive multiple of 4."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % 4:
        raise ValueError(f"{name} must be a positive multiple of 4 (r, i, j, k blocks), got {value!r}")
    return value // 4
