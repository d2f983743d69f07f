"""QuaternionBatchNorm2d against a loop-by-loop numpy computation of the reference formulas
(original_system.md §1.6) in both statistic modes, plus state, momentum and errors."""
import numpy as np
import pytest
import torch

from quaternion_layers import QuaternionBatchNorm2d


def hand_stats(x: np.ndarray, mode: str):
    """Per-definition statistics with explicit loops. Returns (mean (4,) or (4,Q), var scalar or (Q,))."""
    n, c, h, w = x.shape
    q = c // 4
    chunks = [x[:, comp * q:(comp + 1) * q] for comp in range(4)]
    if mode == "global":
        mean = np.array([ch.mean() for ch in chunks])
        total = 0.0
        for b in range(n):
            for ch in range(q):
                for yy in range(h):
                    for xx in range(w):
                        total += sum((chunks[comp][b, ch, yy, xx] - mean[comp]) ** 2 for comp in range(4))
        return mean, total / (n * q * h * w)
    mean = np.array([[chunks[comp][:, ch].mean() for ch in range(q)] for comp in range(4)])
    var = np.zeros(q)
    for ch in range(q):
        for comp in range(4):
            var[ch] += ((chunks[comp][:, ch] - mean[comp, ch]) ** 2).sum()
        var[ch] /= n * h * w
    return mean, var


def hand_forward(x, gamma, beta, mean, var, mode, eps=1e-5):
    n, c, h, w = x.shape
    q = c // 4
    out = np.empty_like(x)
    for comp in range(4):
        for ch in range(q):
            m = mean[comp] if mode == "global" else mean[comp, ch]
            v = var if mode == "global" else var[ch]
            out[:, comp * q + ch] = gamma[ch] * (x[:, comp * q + ch] - m) / np.sqrt(v + eps) + beta[comp * q + ch]
    return out


def _batch(seed, shape=(3, 8, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    # distinct per-component offsets so that a wrong grouping of the statistics shows
    return torch.randn(shape, generator=g, dtype=torch.float64) * 2 + torch.arange(shape[1]).view(1, -1, 1, 1) % 3


@pytest.mark.parametrize("mode", ["global", "channel"])
def test_train_eval_and_running_stats_match_hand_computation(mode):
    bn = QuaternionBatchNorm2d(8, momentum=0.3, mode=mode).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bn.gamma.copy_(torch.rand(bn.gamma.shape, generator=g) + 0.5)
        bn.beta.copy_(torch.randn(bn.beta.shape, generator=g))
    gamma, beta = bn.gamma.detach().numpy().ravel(), bn.beta.detach().numpy().ravel()
    run_mean = np.zeros(4) if mode == "global" else np.zeros((4, 2))
    run_var = 1.0 if mode == "global" else np.ones(2)
    for step in range(2):
        x = _batch(step)
        mean, var = hand_stats(x.numpy(), mode)
        np.testing.assert_allclose(bn(x).detach().numpy(), hand_forward(x.numpy(), gamma, beta, mean, var, mode),
                                   rtol=1e-10, atol=1e-12)
        run_mean = 0.7 * run_mean + 0.3 * mean
        run_var = 0.7 * run_var + 0.3 * var
        np.testing.assert_allclose(bn.moving_mean.numpy(), run_mean, rtol=1e-12)
        np.testing.assert_allclose(bn.moving_var.numpy(), np.reshape(run_var, bn.moving_var.shape), rtol=1e-12)
    bn.eval()
    x = _batch(5)
    before = bn.moving_mean.clone(), bn.moving_var.clone()
    np.testing.assert_allclose(bn(x).detach().numpy(),
                               hand_forward(x.numpy(), gamma, beta, run_mean, run_var, mode), rtol=1e-10, atol=1e-12)
    assert torch.equal(before[0], bn.moving_mean) and torch.equal(before[1], bn.moving_var)


def test_global_mode_output_is_whitened():
    """With gamma 1 / beta 0 the output has zero mean per component and mean |q|² of 1 (minus eps)."""
    bn = QuaternionBatchNorm2d(8).double()
    y = bn(_batch(7)).detach().view(3, 4, 2, 4, 5)
    assert torch.allclose(y.mean(dim=(0, 2, 3, 4)), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    assert abs(y.square().sum(1).mean().item() - 1) < 1e-4


def test_state_dict_matches_reference():
    bn = QuaternionBatchNorm2d(64)
    assert [(k, tuple(v.shape)) for k, v in bn.state_dict().items()] == [
        ("gamma", (1, 16, 1, 1)), ("beta", (1, 64, 1, 1)), ("moving_var", (1,)), ("moving_mean", (4,))]
    assert torch.all(bn.gamma == 1) and torch.all(bn.beta == 0)
    assert torch.all(bn.moving_var == 1) and torch.all(bn.moving_mean == 0)
    channel = QuaternionBatchNorm2d(64, mode="channel")
    assert {k: tuple(v.shape) for k, v in channel.state_dict().items()} == {
        "gamma": (1, 16, 1, 1), "beta": (1, 64, 1, 1), "moving_var": (16,), "moving_mean": (4, 16)}
    with pytest.raises(RuntimeError, match="moving_mean"):
        channel.load_state_dict(bn.state_dict())


def test_gamma_init_and_frozen_beta():
    bn = QuaternionBatchNorm2d(8, gamma_init=0.5, beta_param=False)
    assert torch.all(bn.gamma == 0.5) and not bn.beta.requires_grad
    assert [n for n, p in bn.named_parameters() if p.requires_grad] == ["gamma"]


@pytest.mark.parametrize("make,match", [
    (lambda: QuaternionBatchNorm2d(6), "num_features must be a positive multiple of 4.*got 6"),
    (lambda: QuaternionBatchNorm2d(8, mode="instance"), "mode must be one of"),
    (lambda: QuaternionBatchNorm2d(8, momentum=1.5), "momentum must be a number in"),
    (lambda: QuaternionBatchNorm2d(8, eps=0), "eps must be a positive number"),
])
def test_constructor_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_forward_errors():
    bn = QuaternionBatchNorm2d(8)
    with pytest.raises(ValueError, match=r"expected input \(N, 8, H, W\), got shape \(2, 4, 3, 3\)"):
        bn(torch.zeros(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"expected input \(N, 8, H, W\), got shape \(2, 8, 3\)"):
        bn(torch.zeros(2, 8, 3))
