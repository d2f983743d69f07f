"""Weight initialisation: the polar quaternion init's statistics against their closed forms and scipy's
chi(4) distribution, the quaternion-unit fans of §1.4 (incl. the transposed conv's swap), the unitary and
random inits, and seeding."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from quaternion_layers import QuaternionConv, QuaternionLinear, QuaternionTransposeConv
from quaternion_layers import functional as QF


def _weights(layer):
    return [getattr(layer, f"{p}_weight").detach().double() for p in "rijk"]


@pytest.mark.parametrize("make,s2", [
    # s² written out from §1.4: glorot 1/(2(fan_in+fan_out)), he 1/(2 fan_in), fans in quaternion units
    (lambda: QuaternionConv(256, 128, 3, seed=1), 1 / (2 * (64 * 9 + 32 * 9))),
    (lambda: QuaternionConv(256, 128, 3, init_criterion="he", seed=1), 1 / (2 * 64 * 9)),
    (lambda: QuaternionLinear(1024, 512, seed=2), 1 / (2 * 256)),
    # transposed conv: the init sees out/4 as its "in", so he uses fan_in = (out/4)·k² = 32·9, not 64·9
    (lambda: QuaternionTransposeConv(256, 128, 3, seed=3), 1 / (2 * 32 * 9)),
])
def test_quaternion_init_energy_is_4_s_squared(make, s2):
    r, i, j, k = _weights(make())
    energy = (r ** 2 + i ** 2 + j ** 2 + k ** 2).mean().item()
    assert abs(energy / (4 * s2) - 1) < 0.03
    assert abs((r ** 2).mean().item() / (2 * s2) - 1) < 0.04            # E[cos²] = 1/2
    assert abs((i ** 2).mean().item() / (2 * s2 / 3) - 1) < 0.05        # E[sin²]·E[u_i²/|u|²] = 1/2 · 1/3
    assert abs(r.mean().item()) < 0.02 * math.sqrt(s2)


def test_quaternion_init_modulus_is_chi4_times_s():
    shape, fan_in, fan_out = (64, 64, 3, 3), 64 * 9, 64 * 9
    r, i, j, k = QF.quaternion_init(shape, fan_in, fan_out, "glorot", torch.Generator().manual_seed(4),
                                    torch.float64)
    s = 1 / math.sqrt(2 * (fan_in + fan_out))
    modulus = torch.sqrt(r ** 2 + i ** 2 + j ** 2 + k ** 2).numpy().ravel()
    assert stats.kstest(modulus, stats.chi(df=4, scale=s).cdf).pvalue > 1e-3
    # and it is not some other scale
    assert stats.kstest(modulus, stats.chi(df=4, scale=1.2 * s).cdf).pvalue < 1e-6


def test_unitary_and_random_inits():
    r, i, j, k = QF.unitary_init((50, 40), 50, 40, "he", torch.Generator().manual_seed(5), torch.float64)
    torch.testing.assert_close(r ** 2 + i ** 2 + j ** 2 + k ** 2, torch.ones(50, 40, dtype=torch.float64))
    parts = QF.random_init((200, 100), 200, 100, "glorot", torch.Generator().manual_seed(6), torch.float64)
    for t in parts:   # U(-1, 1), deliberately not scaled by s (as the authors)
        assert t.min() >= -1 and t.max() <= 1 and t.abs().max() > 0.99
        assert abs(t.var().item() - 1 / 3) < 0.02
    layer = QuaternionConv(8, 8, 3, weight_init="unitary", seed=0)
    norms = sum(w ** 2 for w in _weights(layer))
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)


def test_init_returns_independent_tensors_of_the_shape():
    for init in QF.WEIGHT_INITS.values():
        parts = init((3, 5, 2), 10, 6, "glorot", None, torch.float32)
        assert all(p.shape == (3, 5, 2) and p.dtype == torch.float32 for p in parts)
        assert len({p.untyped_storage().data_ptr() for p in parts}) == 4


def test_same_seed_same_weights():
    a, b = QuaternionConv(8, 16, 3, seed=7), QuaternionConv(8, 16, 3, seed=7)
    c = QuaternionConv(8, 16, 3, seed=torch.Generator().manual_seed(7))
    d = QuaternionConv(8, 16, 3, seed=8)
    for wa, wb, wc, wd in zip(_weights(a), _weights(b), _weights(c), _weights(d)):
        assert torch.equal(wa, wb) and torch.equal(wa, wc) and not torch.equal(wa, wd)
    torch.manual_seed(3)
    e = QuaternionLinear(16, 8)
    torch.manual_seed(3)
    f = QuaternionLinear(16, 8)
    assert all(torch.equal(x, y) for x, y in zip(_weights(e), _weights(f)))
    # a seeded layer does not consume the global RNG
    torch.manual_seed(3)
    QuaternionLinear(16, 8, seed=1)
    g = QuaternionLinear(16, 8)
    assert all(torch.equal(x, y) for x, y in zip(_weights(e), _weights(g)))


def test_scale_param_is_xavier_uniform_and_bias_zero():
    layer = QuaternionConv(64, 64, 3, rotation=True, scale=True, seed=9)
    bound = math.sqrt(6 / (16 * 9 + 16 * 9))
    sp = layer.scale_param.detach()
    assert sp.abs().max() <= bound and sp.abs().max() > 0.95 * bound
    assert torch.all(layer.bias == 0)


def test_fans_and_scales():
    assert QF.weight_fans((16, 4, 3, 3), "conv") == (36, 144)
    assert QF.weight_fans((4, 16, 3, 3), "transpose") == (144, 36)
    assert QF.weight_fans((2304, 1024), "linear") == (2304, 1024)
    assert QF.init_scale(36, 144, "glorot") == pytest.approx(1 / np.sqrt(360))
    assert QF.init_scale(36, 144, "he") == pytest.approx(1 / np.sqrt(72))
    with pytest.raises(ValueError, match="layout must be"):
        QF.weight_fans((4, 4), "dense")
    with pytest.raises(ValueError, match="shape must be non-empty with positive sizes"):
        QF.quaternion_init((0, 3), 1, 1)
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        QF.quaternion_init((2, 3), 1, 1, generator=5)
