"""The authors' protocol switches against hand computations: early stopping, per-batch averaging, z-score,
the real decoder's division by 4, RH-emo's BatchNorm mode."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from rhemo.data.features import FeatureSettings
from rhemo.train import loop, losses
from rhemo.train.embeddings import RHemoEncoder
from rhemo.train.protocol import authors_should_stop, batch_mean_accuracy, chunk_bounds
from rhemo.data.normalisation import Normalisation, compute_normalisation, pad_start


def stop_epoch(values, patience, mode="min"):
    """0-based epoch after which the authors' rule stops, feeding the values one epoch at a time (None: never)."""
    for epoch in range(len(values)):
        if authors_should_stop(values[:epoch + 1], patience, mode):
            return epoch
    return None


# Each case was worked out by hand: checks start at epoch patience+1; the window is the last patience-1 values.
@pytest.mark.parametrize("values, patience, mode, expected", [
    # e=4: window [2, 1.5] → min at 1; e=5: [1.5, 1.6] → min at 0 → stop (our patience rule would go on)
    ([5, 4, 3, 2, 1.5, 1.6, 1.4, 1.7, 1.8], 3, "min", 5),
    # window of 3 from e=5: [1.1, 1.2, 0.9] no; [1.2, 0.9, 1.0] no; [0.9, 1.0, 1.0] → stop at 7
    ([3, 2, 1, 1.1, 1.2, 0.9, 1.0, 1.0, 1.05], 4, "min", 7),
    # a tie with the oldest value of the window counts as no improvement: e=4, window [1, 1]
    ([3, 2, 1, 1, 1], 3, "min", 4),
    # never stops while the values keep falling
    ([6, 5, 4, 3, 2, 1, 0.5], 3, "min", None),
    # patience 1: the slice [-0:] is the whole history, so it stops only when epoch 0 is the best so far
    ([1, 2, 3, 4], 1, "min", 2),
    ([2, 1, 3, 4, 5, 6], 1, "min", None),
    # patience 2: the window is the last value alone, so it always stops at epoch 3, never earlier
    ([4, 3, 2, 1, 0.5], 2, "min", 3),
    # maximised metric: e=4 window [0.4, 0.5] no; e=5 [0.5, 0.45] → stop
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.45], 3, "max", 5),
    # a nan counts as the worst value: e=4 window [0.7, nan] → stop
    ([1, 0.9, 0.8, 0.7, math.nan], 3, "min", 4),
])
def test_authors_early_stopping_against_hand_computed_stop_epochs(values, patience, mode, expected):
    assert stop_epoch([float(v) for v in values], patience, mode) == expected


def test_patience_rule_is_still_available_and_differs():
    values = [5, 4, 3, 2, 1.5, 1.6, 1.4, 1.7, 1.8, 1.9]
    cfg = {"early_stopping": True, "early_stopping_rule": "patience", "patience": 3}
    state = loop.FitState()
    stops = []
    best = None
    for epoch, value in enumerate(values):
        state.history.append({"val_loss": value})
        if best is None or value < best:
            best, state.bad_epochs = value, 0
        else:
            state.bad_epochs += 1
        stops.append(loop.should_stop(state, "loss", "min", cfg))
    assert stops.index(True) == 9          # three epochs without improvement after 1.4 at epoch 6
    authors = {**cfg, "early_stopping_rule": "authors"}
    assert loop.should_stop(loop.FitState(history=[{"val_loss": v} for v in values[:6]]), "loss", "min", authors)


def test_chunk_bounds_cut_at_multiples_of_the_block():
    assert chunk_bounds(0, 4, 4) == [(0, 4)]
    assert chunk_bounds(3, 6, 4) == [(0, 1), (1, 5), (5, 6)]
    assert chunk_bounds(8, 2, 4) == [(0, 2)]


def _hand_ce(logits, target):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(target)), target]


def test_batch_mean_loss_and_wa_with_a_partial_last_batch():
    rng = np.random.default_rng(0)
    target = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    logits = rng.normal(size=(10, 3))
    # right answers: batch 1 (rows 0-3) 2 of 4, batch 2 (rows 4-7) 4 of 4, batch 3 (rows 8-9) 0 of 2
    right = [True, True, False, False, True, True, True, True, False, False]
    for i, ok in enumerate(right):
        wrong = (target[i] + 1) % 3
        logits[i, target[i] if ok else wrong] += 5.0
    # the loader's batches (3 rows) differ from batch_size (4): the blocks must still be rows 0-3, 4-7, 8-9
    x = torch.tensor(logits, dtype=torch.float32)
    t = torch.tensor(target)
    loader = [{"x": x[a:a + 3], "target": t[a:a + 3], "group": torch.arange(a, min(a + 3, 10))}
              for a in range(0, 10, 3)]
    out = loop.run_pass(nn.Identity(), loop.SERTask(3), loader, torch.device("cpu"), epoch=None, batch_mean_rows=4)
    ce = _hand_ce(logits.astype(np.float32).astype(np.float64), target)
    assert out["wa"] == pytest.approx(0.6)
    assert out["wa_batchmean"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert out["loss"] == pytest.approx(ce.mean(), rel=1e-5)
    assert out["loss_batchmean"] == pytest.approx((ce[:4].mean() + ce[4:8].mean() + ce[8:].mean()) / 3, rel=1e-5)
    # full batches only: the two averages agree
    assert batch_mean_accuracy(x[:8], t[:8], 4) == pytest.approx(6 / 8)


def test_selection_uses_the_batch_mean_loss_unless_sample_averaging_is_asked():
    task = loop.SERTask(4, "loss")
    val = {"loss": 1.0, "loss_batchmean": 2.0, "wa": 0.5}
    assert loop.monitored_value(val, task, {"loss_averaging": "batch"}) == ("loss_batchmean", 2.0)
    assert loop.monitored_value(val, task, {"loss_averaging": "sample"}) == ("loss", 1.0)
    assert loop.monitored_value(val, loop.SERTask(4, "wa"), {"loss_averaging": "batch"}) == ("wa", 0.5)


def test_zscore_statistics_over_real_frames_and_pad_rows_stay_zero():
    rng = np.random.default_rng(1)
    array = rng.random((5, 12, 4)).astype(np.float32) * 3
    array[:, 9:] = 0.0                                   # rows 9-11 pad each segment, as in the store
    train = np.array([3, 0, 2])
    norm = compute_normalisation(array, train, "zscore", chunk_rows=2, frames=9)
    real = array[[0, 2, 3], :9].astype(np.float64)
    assert norm.mean == pytest.approx(real.mean(), rel=1e-10)
    assert norm.std == pytest.approx(real.std(), rel=1e-10)
    out = norm.apply(array[1])
    np.testing.assert_allclose(out[:9], (array[1, :9] - real.mean()) / real.std(), rtol=1e-5)
    assert not out[9:].any()
    batch = norm.apply(torch.from_numpy(array[None, :2]))   # (1, 2, 12, 4) tensors too
    assert not batch[..., 9:, :].any()
    assert Normalisation.from_dict(norm.to_dict()) == norm
    assert Normalisation.from_dict({"kind": "max", "max": 2, "mean": 0, "std": 1}).frames is None
    assert pad_start(FeatureSettings()) == 501      # 4 s → 501 STFT frames, padded to 512


def _bce(p, t):
    return float(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean())


def test_real_decoder_division_by_four_switch():
    recon = torch.full((2, 1, 3, 2), 0.8)
    target = torch.full((2, 1, 3, 2), 0.3)
    args = (torch.zeros(2, 5), torch.full((2, 3), 0.5), torch.tensor([0, 1]), torch.zeros(2, 3))
    ours = losses.rhemo_loss(recon, target, *args)["recon"].item()
    theirs = losses.rhemo_loss(recon, target, *args, recon_div4=True)["recon"].item()
    assert ours == pytest.approx(_bce(0.8, 0.3), rel=1e-6)
    assert theirs == pytest.approx(_bce(0.2, 0.3), rel=1e-6)
    quat = torch.rand(2, 4, 3, 2, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    a = losses.rhemo_loss(quat, target, *args)["total"].item()
    b = losses.rhemo_loss(quat, target, *args, recon_div4=True)["total"].item()
    assert a == pytest.approx(b, rel=1e-6)


def test_batch_bn_mode_normalises_each_batch_with_its_own_statistics():
    from models.registry import create_model

    torch.manual_seed(0)
    rhemo = create_model("simple_autoencoder_2_vad", hidden_size=4)
    x = torch.rand(3, 1, 512, 128)
    frozen = RHemoEncoder(rhemo, bn_mode="eval")
    frozen.eval()
    eval_out = frozen(x)
    batch = RHemoEncoder(rhemo, bn_mode="batch")
    batch.eval()                                   # an evaluation pass: still batch statistics
    assert batch.rhemo.training
    out_all = batch(x)
    rhemo.train()
    with torch.no_grad():
        expected = rhemo.encode(x)
    torch.testing.assert_close(out_all, expected)
    assert not torch.allclose(out_all, eval_out)
    assert not torch.allclose(batch(x[:2])[0], out_all[0])   # row 0's embedding depends on its batch
    assert not any(p.requires_grad for p in batch.parameters())


def test_dry_run_prints_the_rules_of_every_paper_run(capsys):
    from rhemo.experiments import launcher

    assert launcher.main(["--ids", "[1,2,3]", "--dry_run"]) == 0
    rules = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("rules:")]
    assert len(rules) == 8
    assert all("early stopping authors" in r and "loss averaging batch" in r for r in rules)
    assert all("reconstruction channel mean" in r and "normalisation max" in r for r in rules[:2])
    assert all("RH-emo BN batch (embeddings per batch, cache not used)" in r for r in rules[2:5])
    assert all("normalisation zscore" in r and "RH-emo" not in r for r in rules[5:])


def test_fit_stops_and_selects_by_the_authors_rules_on_the_batch_mean_loss(tmp_path):
    import csv

    from engine_helpers import FOUR, make_store, read_metrics, run_script, ser_config

    store = make_store(tmp_path / "store", FOUR * 4)
    out = tmp_path / "run"
    cfg = ser_config(store, out, num_epochs=12, learning_rate=3e-4, early_stopping=True, patience=3, batch_size=3)
    assert run_script("training_SER.py", cfg, tmp_path) == 0
    with open(out / "log.csv", newline="") as handle:
        values = [float(row["val_loss_batchmean"]) for row in csv.DictReader(handle)]
    # independent truth: the authors' loop, written out with numpy
    expected_epochs = len(values)
    for epoch in range(len(values)):
        if epoch >= 3 + 1 and int(np.argmin(values[:epoch + 1][-(3 - 1):])) == 0:
            expected_epochs = epoch + 1
            break
    metrics = read_metrics(out)
    assert metrics["epochs"] == expected_epochs
    assert metrics["best_epoch"] == int(np.argmin(values)) + 1      # first epoch of the minimum: strict improvement
    assert "wa_batchmean" in metrics["test"] and "loss_batchmean" in metrics["val"]
