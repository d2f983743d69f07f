"""quaternion_layers.functional: Hamilton product and weight assembly against numpy-quaternion and the
block tables of the reference (original_system.md §1.2), the rotation form, and gradcheck of every
functional form."""
import numpy as np
import pytest
import quaternion  # numpy-quaternion
import torch
from torch.autograd import gradcheck

from quaternion_layers import functional as QF


def as_quat(blocks: np.ndarray, axis: int) -> np.ndarray:
    """Real array with [r|i|j|k] blocks along ``axis`` → quaternion array without that block axis split."""
    parts = np.split(np.asarray(blocks, dtype=np.float64), 4, axis=axis)
    return quaternion.as_quat_array(np.stack(parts, axis=-1))


def from_quat(q: np.ndarray, axis: int) -> np.ndarray:
    f = quaternion.as_float_array(q)
    return np.concatenate([f[..., c] for c in range(4)], axis=axis)


# --------------------------------------------------------------------------------------- Hamilton product
def test_hamilton_product_matches_numpy_quaternion():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 8, 5, generator=g, dtype=torch.float64)
    p = torch.randn(3, 8, 5, generator=g, dtype=torch.float64)
    got = QF.hamilton_product(q, p, dim=1).numpy()
    want = from_quat(as_quat(q.numpy(), 1) * as_quat(p.numpy(), 1), 1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_hamilton_product_units_and_last_dim():
    e = torch.eye(4, dtype=torch.float64)  # rows: 1, i, j, k
    np.testing.assert_array_equal(QF.hamilton_product(e[1], e[2], dim=0).numpy(), [0, 0, 0, 1])   # ij = k
    np.testing.assert_array_equal(QF.hamilton_product(e[2], e[1], dim=0).numpy(), [0, 0, 0, -1])  # ji = -k
    np.testing.assert_array_equal(QF.hamilton_product(e[3], e[3], dim=-1).numpy(), [-1, 0, 0, 0])  # kk = -1


def test_hamilton_product_rejects_bad_block_size():
    with pytest.raises(ValueError, match="divisible by 4"):
        QF.hamilton_product(torch.zeros(2, 6), torch.zeros(2, 6))


# ------------------------------------------------------------------------------------- weight assembly
def _scalar_weights():
    return [torch.full((1, 1), float(v)) for v in (1, 2, 3, 4)]  # R=1, I=2, J=3, K=4


def test_conv_block_table_matches_reference():
    w = QF.hamilton_conv_weight(*[t.view(1, 1, 1) for t in _scalar_weights()])[:, :, 0]
    want = [[1, -2, -3, -4], [2, 1, -4, 3], [3, 4, 1, -2], [4, -3, 2, 1]]
    np.testing.assert_array_equal(w.numpy(), want)


def test_linear_block_table_matches_reference():
    m = QF.hamilton_linear_weight(*_scalar_weights())
    want = [[1, 2, 3, 4], [-2, 1, 4, -3], [-3, -4, 1, 2], [-4, 3, -2, 1]]
    np.testing.assert_array_equal(m.numpy(), want)


def test_transpose_conv_weight_uses_the_same_layout():
    w = torch.randn(4, 2, 3, 5)
    torch.testing.assert_close(QF.hamilton_transpose_conv_weight(*w), QF.hamilton_conv_weight(*w))


def test_linear_without_materialised_matrix_equals_x_at_m():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    b = torch.randn(12, generator=g, dtype=torch.float64)
    x = torch.randn(2, 7, 20, generator=g, dtype=torch.float64)
    want = x @ QF.hamilton_linear_weight(*w) + b
    torch.testing.assert_close(QF.quaternion_linear(x, *w, b), want)


def test_grouped_conv_is_block_diagonal_in_quaternion_channels():
    """groups=2 equals two independent convolutions on the two halves of the quaternion channels."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4 * 4, 6, 6, generator=g, dtype=torch.float64)      # 4 quaternion channels
    w = torch.randn(4, 6, 2, 3, 3, generator=g, dtype=torch.float64)       # out/4 = 6, in/4/g = 2
    b = torch.randn(24, generator=g, dtype=torch.float64)
    got = QF.quaternion_conv(x, *w, b, padding=1, groups=2)
    xq = x.view(2, 4, 2, 2, 6, 6)
    halves = [QF.quaternion_conv(xq[:, :, h].reshape(2, 8, 6, 6), *w[:, 3 * h:3 * h + 3], padding=1)
              for h in range(2)]
    want = torch.stack([y.view(2, 4, 3, 6, 6) for y in halves], 2).reshape(2, 24, 6, 6) + b.view(1, -1, 1, 1)
    torch.testing.assert_close(got, want)


# ------------------------------------------------------------------------------------------ rotation form
def _rotation_truth(w: np.ndarray, v: np.ndarray, eps: float) -> np.ndarray:
    """Reference rotation matrix applied to pure quaternion v, via numpy-quaternion:
    M v = q̂ v q̂* + (1 − |q̂|²) v for q̂ = q / sqrt(|q|² + eps) (M's diagonal is written for unit q̂)."""
    qh = w / np.sqrt(w.norm() + eps)          # numpy-quaternion's norm() is the squared modulus
    return qh * v * qh.conj() + (1 - qh.norm()) * v


def test_rotation_conv_1x1_matches_numpy_quaternion():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 3, 2, 1, 1, generator=g, dtype=torch.float64)     # out/4 = 3, in/4 = 2
    scale = torch.rand(3, 2, 1, 1, generator=g, dtype=torch.float64) + 0.5
    x = torch.randn(2, 8, 1, 1, generator=g, dtype=torch.float64)
    got = QF.quaternion_conv_rotation(x, *w, quaternion_format=True, scale=scale)[:, :, 0, 0].numpy()
    wq = quaternion.as_quat_array(np.moveaxis(w[..., 0, 0].numpy(), 0, -1))      # (3, 2)
    xq = as_quat(x[:, :, 0, 0].numpy(), 1)                                       # (2, 2)
    xf = quaternion.as_float_array(xq).copy()
    xf[..., 0] = 0                                                               # the real block is ignored
    pure = quaternion.as_quat_array(xf)
    want = np.zeros((2, 3), dtype=np.quaternion)
    for o in range(3):
        for c in range(2):
            want[:, o] += scale[o, c, 0, 0].item() * _rotation_truth(wq[o, c], pure[:, c], 1e-4)
    np.testing.assert_allclose(got, from_quat(want, 1), rtol=1e-10, atol=1e-12)
    assert np.all(got[:, :3] == 0)   # real output block is zero without bias


def test_rotation_is_a_rotation_for_large_quaternions():
    """With |q|² ≫ eps every 3×3 tap block is orthogonal with determinant 1."""
    w = torch.randn(4, 1, 1, 1, dtype=torch.float64) * 100
    m = QF.rotation_weight(*w, quaternion_format=False)[:, :, 0]
    torch.testing.assert_close(m @ m.T, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
    assert abs(torch.linalg.det(m).item() - 1) < 1e-6


def test_rotation_3_component_format_matches_4_component_inner_blocks():
    w = torch.randn(4, 2, 3, 3, 3, dtype=torch.float64)
    full = QF.rotation_weight(*w, quaternion_format=True).view(4, 2, 4, 3, 3, 3)
    inner = QF.rotation_weight(*w, quaternion_format=False).view(3, 2, 3, 3, 3, 3)
    torch.testing.assert_close(full[1:, :, 1:], inner)
    assert torch.all(full[0] == 0) and torch.all(full[:, :, 0] == 0)


# ------------------------------------------------------------------------------------------------ gradcheck
def _dbl(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64,
                       requires_grad=True)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_gradcheck_conv_and_transpose(nd):
    k = (3, 2, 2)[:nd]
    x = _dbl(1, 8, *([4] * nd), seed=1)
    w = [_dbl(2, 2, *k, seed=10 + c) for c in range(4)]
    b = _dbl(8, seed=5)
    fast = nd == 3    # fast mode (random projections of the Jacobian) keeps the 3-D case quick
    assert gradcheck(lambda x, r, i, j, kk, b: QF.quaternion_conv(x, r, i, j, kk, b, stride=2, padding=1),
                     (x, *w, b), fast_mode=fast)
    assert gradcheck(lambda x, r, i, j, kk, b: QF.quaternion_transpose_conv(
        x, r, i, j, kk, b, stride=2, padding=1, output_padding=1), (x, *w, b), fast_mode=fast)


def test_gradcheck_grouped_and_rotation():
    x = _dbl(1, 16, 3, 3, seed=2)
    w = [_dbl(4, 2, 2, 2, seed=20 + c) for c in range(4)]
    s = _dbl(4, 2, 2, 2, seed=30)
    assert gradcheck(lambda x, *w: QF.quaternion_conv(x, *w, groups=2, dilation=2, padding=1), (x, *w))
    assert gradcheck(lambda x, *w: QF.quaternion_transpose_conv(x, *w[:4], groups=2, stride=2), (x, *w))
    assert gradcheck(lambda x, r, i, j, k, s: QF.quaternion_conv_rotation(x, r, i, j, k, scale=s, padding=1,
                                                                          groups=2), (x, *w, s))
    x3 = _dbl(1, 12, 3, 3, seed=3)
    wt = [_dbl(4, 2, 2, 2, seed=40 + c) for c in range(4)]    # transposed: in/4 = 4, out/4 = 2
    assert gradcheck(lambda x, r, i, j, k, s: QF.quaternion_transpose_conv_rotation(
        x, r, i, j, k, quaternion_format=False, scale=s, stride=2), (x3, *wt, s))


def test_gradcheck_linear_2d_and_3d():
    w = [_dbl(3, 2, seed=50 + c) for c in range(4)]
    b = _dbl(8, seed=55)
    assert gradcheck(lambda x, *p: QF.quaternion_linear(x, *p), (_dbl(5, 12, seed=56), *w, b))
    assert gradcheck(lambda x, *p: QF.quaternion_linear(x, *p), (_dbl(2, 3, 12, seed=57), *w, b))


@pytest.mark.parametrize("mode", ["global", "channel"])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_batch_norm(mode, training):
    q = 2
    mean_shape, var_shape = ((4,), (1,)) if mode == "global" else ((4, q), (q,))
    moving_mean = torch.rand(mean_shape, dtype=torch.float64)
    moving_var = torch.rand(var_shape, dtype=torch.float64) + 0.5

    def f(x, gamma, beta):
        # fresh buffer copies so repeated evaluations see the same state
        return QF.quaternion_batch_norm(x, gamma, beta, moving_mean.clone(), moving_var.clone(), training,
                                        mode=mode)

    assert gradcheck(f, (_dbl(3, 4 * q, 3, 2, seed=60), _dbl(1, q, 1, 1, seed=61), _dbl(1, 4 * q, 1, 1, seed=62)))


# ------------------------------------------------------------------------------------------ validation
def test_functional_errors_name_expected_values():
    w = torch.randn(4, 2, 3, 3, 3)
    with pytest.raises(ValueError, match="expected 12 input channels, got 8"):
        QF.quaternion_conv(torch.randn(1, 8, 5, 5), *w)
    with pytest.raises(ValueError, match="expected a 4-D input"):
        QF.quaternion_conv(torch.randn(8, 5, 5), *w)
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\)"):
        QF.quaternion_conv(torch.randn(1, 12, 5, 5), *w, torch.zeros(12))
    with pytest.raises(ValueError, match="empty output"):
        QF.quaternion_conv(torch.randn(1, 12, 2, 2), *w)
    with pytest.raises(ValueError, match="output_padding"):
        QF.quaternion_transpose_conv(torch.randn(1, 8, 5, 5), *w, output_padding=1)
    with pytest.raises(ValueError, match="expected the r weight's shape"):
        QF.quaternion_conv(torch.randn(1, 12, 5, 5), w[0], w[1], w[2], w[3][:1])
    with pytest.raises(ValueError, match=r"expected input \(\.\.\., 12\)"):
        QF.quaternion_linear(torch.randn(2, 8), *torch.randn(4, 3, 5))
    with pytest.raises(ValueError, match="glorot"):
        QF.init_scale(3, 3, "xavier")
