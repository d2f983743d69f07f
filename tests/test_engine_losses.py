"""Tests of rhemo.train.losses against hand computations (math on Python floats, not the same torch calls)."""
import math

import numpy as np
import pytest
import torch

from rhemo.train.losses import emotion_weights, rhemo_loss, ser_loss

NAN = float("nan")


def bce(p, t):
    """Mean binary cross-entropy with PyTorch's log clamp at -100, computed element by element."""
    p, t = np.asarray(p, dtype=np.float64).ravel(), np.asarray(t, dtype=np.float64).ravel()
    terms = [-(ti * max(math.log(pi) if pi > 0 else -math.inf, -100.0)
               + (1 - ti) * max(math.log(1 - pi) if pi < 1 else -math.inf, -100.0)) for pi, ti in zip(p, t)]
    return sum(terms) / len(terms)


def ce(logits, targets):
    """Mean cross-entropy: -log softmax, by hand."""
    total = 0.0
    for row, t in zip(logits, targets):
        total += math.log(sum(math.exp(v) for v in row)) - row[t]
    return total / len(targets)


def make_batch(k, seed=0):
    rng = np.random.default_rng(seed)
    n, t, f = 4, 2, 3
    recon = rng.uniform(0.05, 0.95, size=(n, k, t, f))
    target = rng.uniform(0.0, 1.0, size=(n, 1, t, f))
    target[0, 0, 0, 0] = 1.7  # above the train max: the BCE target is clamped to 1
    target[1, 0, 1, 2] = 1.2
    logits = rng.normal(size=(n, 5))
    vad_pred = rng.uniform(0.1, 0.9, size=(n, 3))
    class_target = np.array([2, -1, 0, 4])
    vad_target = np.array([[1, 0, 1], [NAN, NAN, NAN], [0, 1, NAN], [1, 1, NAN]], dtype=np.float64)
    return recon, target, logits, vad_pred, class_target, vad_target


def expected(recon, target, logits, vad_pred, class_target, vad_target, alpha, beta, beta_class, beta_vad):
    k = recon.shape[1]
    mean_recon = [[[sum(recon[i, c, a, b] for c in range(k)) / k for b in range(recon.shape[3])]
                   for a in range(recon.shape[2])] for i in range(recon.shape[0])]
    clamped = np.minimum(target[:, 0], 1.0)
    rec = alpha * bce(mean_recon, clamped)
    rows = [i for i, c in enumerate(class_target) if c != -1]
    cls = ce([list(logits[i]) for i in rows], [int(class_target[i]) for i in rows]) if rows else 0.0
    parts = []
    for j in range(3):
        keep = [i for i in range(len(vad_target)) if not math.isnan(vad_target[i, j])]
        parts.append(bce([vad_pred[i, j] for i in keep], [vad_target[i, j] for i in keep]) if keep else 0.0)
    vad = beta_vad * sum(parts)
    emo = beta * (beta_class * cls + vad)
    return {"total": rec + emo, "recon": rec, "emo": emo, "cls": cls, "vad": vad, "valence": parts[0],
            "arousal": parts[1], "dominance": parts[2]}


def run(batch, **weights):
    tensors = [torch.tensor(a, dtype=torch.float32) for a in batch]
    tensors[4] = torch.tensor(batch[4], dtype=torch.int64)
    tensors[0].requires_grad_(True)
    tensors[2].requires_grad_(True)
    tensors[3].requires_grad_(True)
    return tensors, rhemo_loss(*tensors, **weights)


@pytest.mark.parametrize("k", [4, 1])
@pytest.mark.parametrize("weights", [dict(alpha=1.0, beta=0.01, beta_class=1.0, beta_vad=100.0),
                                     dict(alpha=0.5, beta=2.0, beta_class=3.0, beta_vad=0.25),
                                     dict(alpha=1.0, beta=0.0, beta_class=1.0, beta_vad=1.0)])
def test_rhemo_loss_matches_hand_computation(k, weights):
    batch = make_batch(k, seed=k)
    _, out = run(batch, **weights)
    want = expected(*batch, **weights)
    assert set(out) == set(want)
    for key, value in want.items():
        assert out[key].item() == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_real_decoder_is_not_divided_by_four():
    # K = 1 with recon == target clipped away from 0/1: the reconstruction BCE is that of the target itself.
    target = torch.tensor([[[[0.2, 0.8], [0.5, 0.3]]]])
    recon = target.clone()
    out = rhemo_loss(recon, target, torch.zeros(1, 5), torch.full((1, 3), 0.5), torch.tensor([0]),
                     torch.zeros(1, 3))
    assert out["recon"].item() == pytest.approx(bce(target.numpy(), target.numpy()), rel=1e-6)
    # dividing the sum by 4 (the authors' bug) would compare 0.05..0.2 against the target instead
    assert out["recon"].item() != pytest.approx(bce(target.numpy() / 4, target.numpy()), rel=1e-3)


def test_default_weights_are_stage_one():
    batch = make_batch(4)
    _, out = run(batch)
    want = expected(*batch, alpha=1.0, beta=0.0, beta_class=1.0, beta_vad=1.0)
    assert out["emo"].item() == 0.0
    assert out["total"].item() == pytest.approx(want["recon"], rel=1e-6)
    assert out["cls"].item() == pytest.approx(want["cls"], rel=1e-5)  # still reported when weighted 0


def test_gradients_flow_only_through_total_and_missing_terms_are_zero():
    batch = list(make_batch(4))
    batch[4] = np.array([-1, -1, -1, -1])
    batch[5] = np.full((4, 3), NAN)
    tensors, out = run(batch, beta=1.0, beta_vad=1.0)
    for key in ("cls", "vad", "valence", "arousal", "dominance", "emo"):
        assert out[key].item() == 0.0, key
    for key, value in out.items():
        assert value.dim() == 0
        assert value.requires_grad == (key == "total"), key
    out["total"].backward()
    assert tensors[0].grad is not None and tensors[0].grad.abs().sum() > 0
    # the heads stay in the graph with a zero gradient (what DistributedDataParallel needs)
    assert torch.equal(tensors[2].grad, torch.zeros_like(tensors[2]))
    assert torch.equal(tensors[3].grad, torch.zeros_like(tensors[3]))


def test_gradient_of_reconstruction_term_by_hand():
    # d/dr of BCE(mean_k r_k, t) for one element = (m - t) / (m (1 - m)) / K / n_elements
    recon = torch.tensor([[[[0.3]], [[0.5]], [[0.6]], [[0.2]]]], requires_grad=True)
    target = torch.tensor([[[[0.7]]]])
    out = rhemo_loss(recon, target, torch.zeros(1, 2), torch.full((1, 3), 0.5), torch.tensor([0]),
                     torch.zeros(1, 3))
    out["total"].backward()
    m, t = 0.4, 0.7
    want = (m - t) / (m * (1 - m)) / 4
    assert torch.allclose(recon.grad, torch.full_like(recon, want), rtol=1e-5)


def test_loss_is_float32_under_bf16_autocast():
    batch = make_batch(4)
    tensors = [torch.tensor(a, dtype=torch.bfloat16) for a in batch]
    tensors[4] = torch.tensor(batch[4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = rhemo_loss(*tensors, beta=1.0)
    assert out["total"].dtype == torch.float32
    rounded = [t.float().numpy().astype(np.float64) if t.is_floating_point() else batch[4] for t in tensors]
    want = expected(*rounded, alpha=1.0, beta=1.0, beta_class=1.0, beta_vad=1.0)
    assert out["total"].item() == pytest.approx(want["total"], rel=1e-5)


@pytest.mark.parametrize("change, message", [
    (lambda b: b.__setitem__(1, np.zeros((4, 2, 2, 3))), "target must be"),
    (lambda b: b.__setitem__(1, np.zeros((4, 1, 3, 3))), "target must be"),
    (lambda b: b.__setitem__(0, np.zeros((4, 2, 3))), "recon must be"),
    (lambda b: b.__setitem__(3, np.zeros((4, 2))), "vad_pred must be"),
    (lambda b: b.__setitem__(4, np.array([0, 1, 5, 0])), "class targets must be"),
    (lambda b: b.__setitem__(4, np.array([0, -2, 1, 0])), "class targets must be"),
    (lambda b: b.__setitem__(4, np.array([0, 1])), "class targets must be"),
    (lambda b: b.__setitem__(5, np.full((4, 3), 3.0)), "vad_target must be 0/1"),
])
def test_rhemo_loss_rejects_bad_input(change, message):
    batch = list(make_batch(4))
    change(batch)
    with pytest.raises(ValueError, match=message):
        run(batch)


def test_ser_loss_matches_hand_cross_entropy():
    logits = [[1.0, -2.0, 0.5], [0.0, 0.3, 2.0]]
    targets = [2, 1]
    got = ser_loss(torch.tensor(logits), torch.tensor(targets)).item()
    assert got == pytest.approx(ce(logits, targets), rel=1e-6)
    as_int32 = ser_loss(torch.tensor(logits), torch.tensor(targets, dtype=torch.int32)).item()
    assert as_int32 == pytest.approx(ce(logits, targets), rel=1e-6)
    with pytest.raises(ValueError, match="0..2"):
        ser_loss(torch.tensor(logits), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="0..2"):
        ser_loss(torch.tensor(logits), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="integer"):
        ser_loss(torch.tensor(logits), torch.tensor([0.0, 1.0]))


def test_emotion_weights_warmup_table():
    got = [emotion_weights(e, 0.01, 100.0, 4, None) for e in range(7)]
    want = [(0.0, 0.0), (0.0025, 25.0), (0.005, 50.0), (0.0075, 75.0), (0.01, 100.0), (0.01, 100.0),
            (0.01, 100.0)]
    for (b, bv), (wb, wbv) in zip(got, want):
        assert b == pytest.approx(wb) and bv == pytest.approx(wbv)


def test_emotion_weights_holes_and_combined_tables():
    holes = [emotion_weights(e, 1.0, 2.0, 0, 3) for e in range(7)]
    assert holes == [(0.0, 0.0), (1.0, 2.0), (1.0, 2.0), (0.0, 0.0), (1.0, 2.0), (1.0, 2.0), (0.0, 0.0)]
    both = [emotion_weights(e, 1.0, 2.0, 4, 2)[0] for e in range(7)]
    assert both == pytest.approx([0.0, 0.25, 0.0, 0.75, 0.0, 1.0, 0.0])
    assert [emotion_weights(e, 0.5, 3.0, None, None) for e in (0, 9)] == [(0.5, 3.0), (0.5, 3.0)]


@pytest.mark.parametrize("args", [(-1, 1.0, 1.0, 0, 0), (1.5, 1.0, 1.0, 0, 0), (1, 1.0, 1.0, -2, 0),
                                  (1, 1.0, 1.0, 0, 2.0)])
def test_emotion_weights_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        emotion_weights(*args)
