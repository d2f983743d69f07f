"""RH-emo health: dead-channel detection, trivial BCEs, the warning line, metrics.json, the SER load check,
the input transform, and the remedies against dead encoder channels."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from models import simple_autoencoder_2_vad
from rhemo.train import health
from rhemo.train.config import ConfigError
from rhemo.inference import PredictorError, _check_normalisation

from engine_helpers import (FOUR, make_rhemo_weights, make_store, read_metrics, rhemo_config, run_script,
                            ser_config)
from rhemo.data.normalisation import Normalisation, compute_normalisation


def _batches(n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 512, 128, generator=g) * 0.05  # non-negative, like spectrograms
    return [(x[:3], torch.tensor([0, 0, 1])), (x[3:], torch.tensor([1, 2, 2]))]


def _net_with_dead_channels() -> simple_autoencoder_2_vad:
    """conv1 channel 1 and conv3 channel 2 can never fire on non-negative input (weights ≤ 0, bias < 0)."""
    torch.manual_seed(0)
    net = simple_autoencoder_2_vad(hidden_size=8)
    with torch.no_grad():
        net.conv1.weight[1] = -net.conv1.weight[1].abs()
        net.conv1.bias[1] = -0.1
        net.conv3.weight[2] = 0.0
        net.conv3.bias[2] = -1.0
        net.conv1.weight[0] = net.conv1.weight[0].abs()  # channel 0 stays alive
        net.conv1.bias[0] = 0.01
    return net


def test_probe_finds_exactly_the_hand_killed_channels_and_zero_fractions():
    net = _net_with_dead_channels()
    probe = health.probe_encoder(net, _batches())
    assert probe["dead"]["conv1_bn"] == [1]
    assert probe["dead"]["conv3"] == [2]
    assert probe["channels"] == {"conv1_bn": 2, "conv2_bn": 4, "conv3": 4}
    assert probe["rows"] == 6
    assert probe["embedding"]["j"]["zero_fraction"] == 1.0  # component j = latent channel 2
    assert probe["embedding"]["j"]["std"] == 0.0 and probe["embedding"]["j"]["utterance_spread"] == 0.0
    with torch.no_grad():  # independent computation of the other statistics
        latent = net.eval().encode(torch.cat([x for x, _ in _batches()])).double()
    r = latent[:, 0]
    assert probe["embedding"]["r"]["mean"] == pytest.approx(float(r.mean()), rel=1e-6)
    assert probe["embedding"]["r"]["std"] == pytest.approx(float(r.std(unbiased=False)), rel=1e-5)
    assert probe["embedding"]["r"]["zero_fraction"] == pytest.approx(float((r == 0).double().mean()))
    utterances = torch.stack([latent[[0, 1]].mean(0), latent[[2, 3]].mean(0), latent[[4, 5]].mean(0)])
    spread = float(utterances[:, 0].std(dim=0, unbiased=False).mean())
    assert probe["embedding"]["r"]["utterance_spread"] == pytest.approx(spread, rel=1e-5)


def test_a_healthy_net_has_no_dead_channel_and_no_warning():
    torch.manual_seed(0)
    net = simple_autoencoder_2_vad(hidden_size=8)
    with torch.no_grad():
        for layer in (net.conv1, net.conv2, net.conv3):
            layer.weight.abs_()  # every channel fires on non-negative input
    probe = health.probe_encoder(net, _batches())
    assert all(not dead for dead in probe["dead"].values())
    report = {**probe, "recon_bce": 0.01, "trivial_bce": {"constant": 0.2, "bin_mean": 0.1}}
    assert health.warning_line(report) is None


def test_warning_names_dead_layers_and_a_model_that_does_not_beat_the_trivial_predictor():
    probe = health.probe_encoder(_net_with_dead_channels(), _batches())
    report = {**probe, "recon_bce": 0.01, "trivial_bce": {"constant": 0.2, "bin_mean": 0.1}}
    line = health.warning_line(report)
    assert "conv1_bn 1/2 dead (channel 1)" in line and "conv3 1/4 dead (channel 2)" in line
    assert "trivial" not in line
    healthy = {**probe, "dead": {k: [] for k in probe["dead"]}}
    assert health.warning_line({**healthy, "recon_bce": 0.01, "trivial_bce": {"constant": 0.2}}) is None
    assert health.warning_line({**healthy, "recon_bce": 0.15, "trivial_bce": {"constant": 0.2, "bin_mean": 0.1}}) \
        is None  # the per-bin mean is reported, not required
    beaten = health.warning_line({**healthy, "recon_bce": 0.25, "trivial_bce": {"constant": 0.2, "bin_mean": 0.1}})
    assert "does not beat the best constant predictor (0.2)" in beaten and "dead" not in beaten


class _Items(torch.utils.data.Dataset):
    def __init__(self, arrays):
        self.arrays = [torch.tensor(a, dtype=torch.float32)[None] for a in arrays]

    def __len__(self):
        return len(self.arrays)

    def __getitem__(self, i):
        return {"x": self.arrays[i]}


def _clamped_log(p: float) -> float:
    return max(math.log(p), -100.0) if p > 0 else -100.0


def _bce(p: float, x: float) -> float:
    return -(x * _clamped_log(p) + (1 - x) * _clamped_log(1 - p))


def test_trivial_bce_matches_a_hand_computation():
    train = [[[0.2, 0.0], [0.4, 1.0]], [[0.6, 0.0], [0.0, 1.0]]]   # bin means 0.4 0 / 0.2 1 ; mean 0.4
    evaluation = [[[0.5, 0.1], [0.3, 1.4]]]                        # 1.4 is clamped to 1 as in the loss
    got = health.trivial_bce(_Items(train), _Items(evaluation))
    targets = [0.5, 0.1, 0.3, 1.0]
    assert got["constant"] == pytest.approx(sum(_bce(0.4, x) for x in targets) / 4, rel=1e-6)
    bin_means = [0.4, 0.0, 0.2, 1.0]
    assert got["bin_mean"] == pytest.approx(sum(_bce(p, x) for p, x in zip(bin_means, targets)) / 4, rel=1e-6)


def test_checkpoint_warning_from_buffers_alone(tmp_path):
    net = simple_autoencoder_2_vad(hidden_size=8)
    state = net.state_dict()
    assert health.checkpoint_warning(state) is None  # untrained statistics are not judged
    state["conv1_bn.num_batches_tracked"] = torch.tensor(80)
    state["conv1_bn.running_mean"] = torch.tensor([4e-16, 0.003])
    state["conv1_bn.running_var"] = torch.tensor([2e-4, 1e-4])
    state["conv2_bn.num_batches_tracked"] = torch.tensor(80)
    line = health.checkpoint_warning(state, source="w.pt")
    assert line.startswith("w.pt: RH-emo unhealthy") and "conv1_bn channel(s) [0] look dead" in line
    state["conv1_bn.running_mean"] = torch.tensor([0.002, 0.003])
    state["conv1_bn.running_var"] = torch.tensor([2e-6, 1e-4])
    assert "conv1_bn running variance 2e-06 < eps" in health.checkpoint_warning(state)
    state["conv1_bn.running_var"] = torch.tensor([2e-4, 1e-4])
    assert health.checkpoint_warning(state) is None


def test_rhemo_run_reports_health_each_epoch_in_log_and_metrics(tmp_path, capsys):
    store = make_store(tmp_path / "s", FOUR * 2)
    out = tmp_path / "run"
    assert run_script("training_RHemo.py", rhemo_config(store, out, num_epochs=1, label_view="complete"),
                      tmp_path) == 0
    printed = capsys.readouterr().out
    assert "health " in printed and "dead conv1_bn" in printed
    report = read_metrics(out)["health"]
    assert set(report["dead_count"]) == {"conv1_bn", "conv2_bn", "conv3"}
    assert set(report["embedding"]) == {"r", "i", "j", "k"}
    assert report["warning"] is None or report["warning"].startswith("RH-emo unhealthy")
    assert report["recon_bce"] == pytest.approx(read_metrics(out)["val"]["recon"])
    assert set(report["trivial_bce"]) == {"constant", "bin_mean"}
    with open(out / "log.csv") as handle:
        row = next(csv.DictReader(handle))
    assert float(row["health_dead_conv1_bn"]) == report["dead_count"]["conv1_bn"]
    assert "health_min_bn_var" in row and "health_trivial_bce" in row


def _dead_weights(tmp_path, store):
    path = make_rhemo_weights(tmp_path / "w.pt", store)
    state = torch.load(path, weights_only=True)
    state["conv1_bn.running_mean"][0] = 0.0
    state["conv1_bn.running_var"][0] = 1e-7
    torch.save(state, path)  # the authors' bare state_dict layout
    return path


def test_ser_prints_the_warning_when_it_loads_a_dead_rhemo(tmp_path, capsys):
    store = make_store(tmp_path / "s", FOUR * 2)
    weights = _dead_weights(tmp_path, store)
    cfg = ser_config(store, tmp_path / "ser", model_quat=True, use_r2he=True, r2he_model_path=str(weights),
                     num_epochs=1)
    assert run_script("training_SER.py", cfg, tmp_path) == 0
    printed = capsys.readouterr().out
    assert "WARNING" in printed and "conv1_bn channel(s) [0] look dead" in printed


def test_ser_refuses_an_rhemo_trained_with_another_input_transform(tmp_path, capsys):
    store = make_store(tmp_path / "s", FOUR * 2)
    weights = make_rhemo_weights(tmp_path / "w.pt", store)
    rhemo = simple_autoencoder_2_vad(hidden_size=8)
    with pytest.raises(ConfigError, match="trained with input_transform 'none', but this run uses 'log1p'"):
        health.check_loaded(rhemo, str(weights), "log1p")
    cfg = ser_config(store, tmp_path / "ser", model_quat=True, use_r2he=True, r2he_model_path=str(weights),
                     input_transform="log1p")
    assert run_script("training_SER.py", cfg, tmp_path) == 2
    assert "input_transform" in capsys.readouterr().err


def test_log1p_transform_values_record_and_inference_check(tmp_path):
    rng = np.random.default_rng(0)
    array = (rng.random((3, 4, 5)) * 1e-3).astype(np.float32)
    rows = np.array([0, 2])
    norm = compute_normalisation(array, rows, "max", chunk_rows=1, transform="log1p")
    raw_mean = float(np.asarray(array[rows], np.float64).mean())
    assert norm.transform_scale == pytest.approx(raw_mean, rel=1e-9)
    assert norm.max == pytest.approx(float(np.log1p(array[rows] / raw_mean).max()), rel=1e-6)
    np.testing.assert_allclose(norm.apply(array[1]), np.log1p(array[1] / raw_mean) / norm.max, rtol=1e-5)
    np.testing.assert_allclose(norm.apply(torch.from_numpy(array[1])).numpy(), norm.apply(array[1]), rtol=1e-5)
    assert Normalisation.from_dict(norm.to_dict()) == norm
    old = {"kind": "max", "max": 2.0, "mean": 1.0, "std": 1.0}  # a record from before input transforms
    assert Normalisation.from_dict(old).transform == "none"
    assert _check_normalisation(tmp_path, norm.to_dict()) == norm
    with pytest.raises(PredictorError, match="input transform must be one of"):
        _check_normalisation(tmp_path, {**norm.to_dict(), "transform": "sqrt"})


# ------------------------------------------------------------------------------------ remedies (bench setup)
@pytest.fixture(scope="module")
def bench_module():
    import importlib.util

    from engine_helpers import REPO

    spec = importlib.util.spec_from_file_location("bench_rhemo_health", REPO / "bench" / "bench_rhemo_health.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo_like(tmp_path_factory, bench_module):
    """The demo's synthetic IEMOCAP-layout corpus at 60 utterances, and stage 1 with the authors' settings
    (seed 1, lr 1e-3, zero biases: one conv1 channel dies within 6 Adam steps)."""
    store = bench_module.build_store(tmp_path_factory.mktemp("bench"), "demo-iemocap", 60)
    return store, bench_module.run(store, 1, {}, 2)


def test_the_authors_settings_kill_a_channel_and_stay_far_from_the_trivial_predictor(demo_like):
    _, paper = demo_like
    assert paper[0]["dead_fraction"] == 0 and paper[-1]["dead"]["conv1_bn"] == 1
    assert paper[-1]["recon"] > 10 * paper[-1]["trivial"]["constant"]


def test_encoder_bias_init_with_decoder_bias_init_keeps_every_channel_alive(demo_like, bench_module):
    store, paper = demo_like
    remedy = bench_module.run(store, 1, bench_module.VARIANTS["bias0.1+outbias"], 2)
    assert sum(remedy[-1]["dead"].values()) == 0 < sum(paper[-1]["dead"].values())


def test_decoder_bias_init_starts_the_reconstruction_at_the_best_constant(demo_like, bench_module):
    store, paper = demo_like
    remedy = bench_module.run(store, 1, bench_module.VARIANTS["outbias"], 1)
    constant = remedy[0]["trivial"]["constant"]
    assert remedy[0]["recon"] == pytest.approx(constant, rel=0.02)  # at init, before any step
    assert remedy[-1]["recon"] < 1.05 * constant < paper[1]["recon"] / 10
