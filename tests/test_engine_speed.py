"""The engine's speed-ups change no result: RH-emo without its idle heads, fused Adam, larger evaluation batches,
best weights outside last.pt; and the GPU-only branches (pinned memory, asynchronous copies, cuDNN, bf16) are
taken only where they apply."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from models.registry import create_model
from rhemo.data.store import SegmentStore
from rhemo.train import checkpoint as ckpt
from rhemo.train import loaders as data, runtime as device, loop
from rhemo.train import resume
from tests.engine_helpers import FOUR, make_store, read_metrics, rhemo_config, run_script, ser_config
from rhemo.data.normalisation import compute_normalisation

CPU = device.Runtime(torch.device("cpu"))


@pytest.fixture(scope="module")
def rhemo_loader(tmp_path_factory):
    store = SegmentStore(make_store(tmp_path_factory.mktemp("store"), FOUR * 2))
    rows = np.arange(len(store))
    norm = compute_normalisation(store.predictors, rows, "max")
    vad = (rows[:, None] % 2 == np.arange(3)[None] % 2).astype(np.float32)
    dataset = data.SegmentDataset(store.predictors, rows, rows % 4, vad, normalisation=norm)
    return data.make_train_loader(dataset, 2, seed=0, runtime=CPU)


def train_epochs(task, loader, epochs, *, skip_idle_heads, weight_decay=0.0):
    """Fresh tiny RH-emo (seed 0), trained ``epochs`` epochs through run_pass as fit does; (model, optimiser)."""
    torch.manual_seed(0)
    net = create_model("simple_autoencoder_2_vad", hidden_size=8, classifier_dropout=0.5)
    optimizer = loop.make_optimizer(list(net.parameters()), 1e-2, weight_decay)
    net.train()
    speedups = copy.copy(loop.SPEEDUPS)
    loop.SPEEDUPS.skip_idle_heads = skip_idle_heads
    try:
        for epoch in range(epochs):
            torch.manual_seed(100 + epoch)  # dropout draws, re-seeded per epoch as in fit
            loader.sampler.set_epoch(epoch)
            loop.run_pass(net, task, loader, CPU.device, optimizer=optimizer, epoch=epoch)
    finally:
        loop.SPEEDUPS = speedups
    return net, optimizer


def heads(state):
    return {k: v for k, v in state.items() if k.startswith("classifier_")}


def assert_same_training(fast, full):
    (net_a, opt_a), (net_b, opt_b) = fast, full
    state_a, state_b = net_a.state_dict(), net_b.state_dict()
    for key in state_a:
        if key.startswith("classifier_"):
            assert torch.equal(state_a[key], state_b[key]), key
        else:
            torch.testing.assert_close(state_a[key], state_b[key], rtol=1e-5, atol=1e-6, msg=key)
    # Adam's state of every parameter as the full computation leaves it (heads: same step count and moments).
    # A parameter that never had a gradient keeps a step count alone: the full run's moments are zeros there
    params_a = list(net_a.parameters())
    counted = [p for p in params_a if set(opt_a.state[p]) == {"step"}]
    loop._materialise_moments(opt_a, params_a)
    for (name, param_a), param_b in zip(net_a.named_parameters(), net_b.parameters()):
        moments_a, moments_b = opt_a.state[param_a], opt_b.state[param_b]
        if any(param_a is p for p in counted):
            assert not any(torch.any(v) for k, v in moments_b.items() if k != "step"), name
        assert moments_a.keys() == moments_b.keys(), name
        for key in moments_a:
            exact = name.startswith("classifier_") or key == "step"
            torch.testing.assert_close(moments_a[key], moments_b[key], rtol=0 if exact else 1e-5,
                                       atol=0 if exact else 1e-6, msg=f"{name} {key}")


def test_stage1_without_heads_ends_like_the_full_computation(rhemo_loader):
    task = loop.RHemoTask(alpha=1.0, beta=0.0, beta_class=1.0, beta_vad=1.0)
    fast = train_epochs(task, rhemo_loader, 2, skip_idle_heads=True)
    full = train_epochs(task, rhemo_loader, 2, skip_idle_heads=False)
    heads_state = [fast[1].state[p] for name, p in fast[0].named_parameters() if name.startswith("classifier_")]
    assert heads_state and all(set(state) == {"step"} for state in heads_state)  # no zero moments kept
    assert_same_training(fast, full)
    steps = 2 * len(rhemo_loader)
    assert all(float(fast[1].state[p]["step"]) == steps for p in fast[0].parameters())
    torch.manual_seed(0)
    initial = create_model("simple_autoencoder_2_vad", hidden_size=8, classifier_dropout=0.5).state_dict()
    assert all(torch.equal(v, initial[k]) for k, v in heads(fast[0].state_dict()).items())  # heads untouched
    assert not torch.equal(fast[0].conv1.weight, initial["conv1.weight"])  # the encoder did train


def test_holes_epochs_skip_the_heads_and_keep_their_momentum(rhemo_loader):
    # holes 2: epochs 0 and 2 weigh the emotion terms 0; in epoch 2 the heads carry momentum from epoch 1,
    # so Adam still moves them (the full computation does too), and epoch 1 sees epoch 0's step count
    task = loop.RHemoTask(alpha=1.0, beta=0.01, beta_class=1.0, beta_vad=100.0, holes=2)
    fast = train_epochs(task, rhemo_loader, 3, skip_idle_heads=True)
    full = train_epochs(task, rhemo_loader, 3, skip_idle_heads=False)
    assert_same_training(fast, full)
    after_two = train_epochs(task, rhemo_loader, 2, skip_idle_heads=True)[0]
    moved = [not torch.equal(v, after_two.state_dict()[k]) for k, v in heads(fast[0].state_dict()).items()]
    assert any(moved)


@pytest.mark.parametrize("implementation", ["default", "foreach", "fused", "float64"])
def test_a_step_count_alone_becomes_the_state_adam_itself_creates(implementation, monkeypatch):
    """A parameter kept out of every step so far (state: its step count alone) gets, before its first gradient,
    exactly the state torch's Adam creates at a first step: keys, dtypes, devices, strides and zero values."""
    if implementation == "float64":
        monkeypatch.setattr(torch, "get_default_dtype", lambda: torch.float64)
    options = {"foreach": {"foreach": True}, "fused": {"fused": True}}.get(implementation, {"foreach": False})
    reference, parked = (nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last) for _ in range(2))
    adam = torch.optim.Adam(reference.parameters(), lr=1e-3, amsgrad=True, **options)
    for p in reference.parameters():
        p.grad = torch.zeros_like(p)
    adam.step()  # Adam's own state after one zero-gradient step
    optimizer = torch.optim.Adam(parked.parameters(), lr=1e-3, amsgrad=True, **options)
    for p in parked.parameters():
        optimizer.state[p]["step"] = loop._adam_step(optimizer, p, 1.0)
    loop._materialise_moments(optimizer, parked.parameters())
    for mine, theirs in zip(parked.parameters(), reference.parameters()):
        created, expected = optimizer.state[mine], adam.state[theirs]
        assert created.keys() == expected.keys()
        for key, value in expected.items():
            assert (created[key].dtype, created[key].device, created[key].stride()) == \
                (value.dtype, value.device, value.stride()), key
            assert torch.equal(created[key], value), key


def test_weight_decay_keeps_the_full_computation(rhemo_loader):
    task = loop.RHemoTask(alpha=1.0, beta=0.0, beta_class=1.0, beta_vad=1.0)
    net, _ = train_epochs(task, rhemo_loader, 1, skip_idle_heads=True, weight_decay=0.1)
    torch.manual_seed(0)
    initial = create_model("simple_autoencoder_2_vad", hidden_size=8, classifier_dropout=0.5).state_dict()
    # weight decay shrinks the heads even with beta 0: the shortcut would have left them where they were
    assert not torch.equal(net.classifier_discrete[0].weight, initial["classifier_discrete.0.weight"])


def test_validation_of_untrained_heads_reports_accuracy_as_not_applicable(rhemo_loader):
    torch.manual_seed(0)
    net = create_model("simple_autoencoder_2_vad", hidden_size=8)
    stage1 = loop.RHemoTask(alpha=1.0, beta=0.0, beta_class=1.0, beta_vad=1.0)
    lean = loop.evaluate(net, stage1, rhemo_loader, CPU.device)
    loop.SPEEDUPS.skip_idle_heads = False
    try:
        full = loop.evaluate(net, stage1, rhemo_loader, CPU.device)
    finally:
        loop.SPEEDUPS.skip_idle_heads = True
    assert lean["total"] == pytest.approx(full["total"], rel=1e-6) and lean["recon"] == lean["total"]
    assert lean["emo"] == 0.0 == full["emo"]
    for key in ("acc", "acc_valence", "acc_arousal", "acc_dominance", "cls", "vad"):
        assert math.isnan(lean[key]) and math.isfinite(full[key]), key
    stage2 = loop.RHemoTask(alpha=1.0, beta=0.01, beta_class=1.0, beta_vad=100.0, holes=2)
    assert math.isfinite(loop.evaluate(net, stage2, rhemo_loader, CPU.device)["acc"])  # configured beta > 0


@pytest.mark.parametrize("value, device, expected", [(None, "cpu", True), (None, "cuda", False),
                                                     (False, "cpu", False), (True, "cuda", True)])
def test_channels_last_null_means_on_the_cpu_only(value, device, expected):
    assert loop.use_channels_last({"channels_last": value}, torch.device(device)) is expected


@pytest.mark.parametrize("script, config, layout", [("training_RHemo.py", rhemo_config, True),
                                                    ("training_SER.py", ser_config, False)])
def test_rhemo_trains_channels_last_on_the_cpu_by_default_and_ser_does_not(tmp_path, monkeypatch, script, config,
                                                                          layout):
    store = make_store(tmp_path / "store", FOUR * 3)
    seen = []
    real = loop.place_model

    def place(net, runtime, channels_last=False, *args):
        seen.append(channels_last)
        return real(net, runtime, channels_last, *args)

    monkeypatch.setattr(loop, "place_model", place)
    assert run_script(script, config(store, tmp_path / "run", num_epochs=1), tmp_path) == 0
    assert seen == [layout]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["channels_last"]
    assert saved is (None if layout else False)  # the key as configured: the device decides at run time


def test_channels_last_rhemo_step_matches_the_contiguous_one(rhemo_loader):
    """The channels_last switch (bench: its speed-up on RH-emo's thin convolutions) changes only the rounding:
    one epoch's losses and first Adam moments (the gradients scaled by 1 - beta1) match the contiguous run."""
    task = loop.RHemoTask(alpha=1.0, beta=0.0, beta_class=1.0, beta_vad=1.0)
    runs = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        net = create_model("simple_autoencoder_2_vad", hidden_size=8)
        if channels_last:
            net.to(memory_format=torch.channels_last)
        optimizer = loop.make_optimizer(list(net.parameters()), 0.0, 0.0)  # lr 0: the moments see the gradients
        net.train()
        rhemo_loader.sampler.set_epoch(0)
        result = loop.run_pass(net, task, rhemo_loader, CPU.device, optimizer=optimizer, epoch=0,
                               channels_last=channels_last)
        runs.append((result, net, optimizer))
    (plain, plain_net, plain_opt), (fast, fast_net, fast_opt) = runs
    assert fast_net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert math.isclose(fast["recon"], plain["recon"], rel_tol=1e-5)
    for (name, a), b in zip(plain_net.named_parameters(), fast_net.parameters()):
        if name.startswith(("conv", "t_conv")):
            expected = plain_opt.state[a]["exp_avg"]
            error = (fast_opt.state[b]["exp_avg"] - expected).abs().max() / expected.abs().max()
            assert error < 1e-2, (name, float(error))  # conv1's gradient sums ~1e6 cancelling terms; 2e-3 seen
            assert torch.any(expected != 0), name


def test_fused_adam_follows_the_plain_optimiser():
    torch.manual_seed(0)
    plain_net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    fused_net = copy.deepcopy(plain_net)
    initial = copy.deepcopy(plain_net)
    plain = torch.optim.Adam(plain_net.parameters(), lr=1e-2, weight_decay=1e-3)
    fused = loop.make_optimizer(list(fused_net.parameters()), 1e-2, 1e-3)
    assert fused.param_groups[0]["fused"] is True
    for step in range(5):
        x = torch.randn(8, 6, generator=torch.Generator().manual_seed(step))
        for net, optimizer in ((plain_net, plain), (fused_net, fused)):
            optimizer.zero_grad()
            net(x).square().mean().backward()
            optimizer.step()
    for a, b, start in zip(plain_net.parameters(), fused_net.parameters(), initial.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        assert not torch.equal(a, start)
    meta = [nn.Parameter(torch.zeros(3, device="meta"))]  # no fused kernel there: foreach instead
    chosen = loop.make_optimizer(meta, 1e-3, 0.0).param_groups[0]
    assert not chosen["fused"] and chosen["foreach"] is True


def test_evaluation_batch_size_does_not_change_the_metrics(tmp_path):
    store = SegmentStore(make_store(tmp_path / "store", FOUR * 2, segments_per_utterance=2))
    rows = np.arange(len(store))
    norm = compute_normalisation(store.predictors, rows, "max")
    dataset = data.SegmentDataset(store.predictors, rows, rows % 4, normalisation=norm)
    torch.manual_seed(0)
    net = create_model("AlexNet", quat=False, num_classes=4, in_channels=1, hidden_size=16)
    task = loop.SERTask(4)
    small, large = (loop.evaluate(net, task, data.make_eval_loader(dataset, b, CPU), CPU.device) for b in (3, 16))
    assert small["confusion"] == large["confusion"]
    assert small["loss"] == pytest.approx(large["loss"], rel=1e-5)
    assert data.eval_batch_size({"eval_batch_size": None, "batch_size": 20}) == 40
    assert data.eval_batch_size({"eval_batch_size": 7, "batch_size": 20}) == 7


def test_best_weights_live_in_best_pt_and_the_resumed_run_is_exact(tmp_path, monkeypatch, after_epoch):
    store = make_store(tmp_path / "store", FOUR * 3)
    base = dict(num_epochs=4, learning_rate=0.0, batch_size=2)  # lr 0: epoch 1 stays the best
    reference = tmp_path / "a"
    assert run_script("training_SER.py", ser_config(store, reference, **base), tmp_path) == 0
    resumed = tmp_path / "b"
    cfg = ser_config(store, resumed, **base)

    def interrupt(epoch: int) -> None:
        if epoch == 3:
            raise KeyboardInterrupt

    after_epoch[:] = [interrupt]
    assert run_script("training_SER.py", cfg, tmp_path) == 130
    last = ckpt.load_checkpoint(resumed / "last.pt")
    assert last["best_epoch"] == 1 and last["best_state_dict"] is None and last["best_in"] == "best.pt"
    best = ckpt.load_checkpoint(resumed / "best.pt")
    assert best["epoch"] == 1 and best["state_dict"].keys() == last["model"].keys()
    after_epoch[:] = []
    assert run_script("training_SER.py", cfg, tmp_path) == 0
    assert not (resumed / "best.pt").exists() and not (resumed / "last.pt").exists()
    for split in ("train", "val", "test"):
        assert read_metrics(resumed)[split] == read_metrics(reference)[split]


# ---------------------------------------------------------------------------------------- GPU branches
class _Recorder:
    """Stands in for a batch tensor and records how it was moved."""

    def __init__(self) -> None:
        self.calls = []

    def to(self, target, **kwargs):
        self.calls.append((target, kwargs))
        return self


def test_pinned_memory_and_asynchronous_copies_only_on_cuda():
    cuda = device.Runtime(torch.device("cuda", 0))
    assert data._loader_options(cuda, 0)["pin_memory"] is True
    assert data._loader_options(CPU, 0)["pin_memory"] is False
    for target, expected in ((torch.device("cuda", 0), True), (torch.device("cpu"), False)):
        value = _Recorder()
        loop._to_device({"x": value}, target, channels_last=False)
        assert value.calls == [(target, {"non_blocking": expected})]


def test_cudnn_benchmark_key_and_bf16_only_where_native(capsys, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    loop._configure_backends({"cudnn_benchmark": True, "amp": True}, torch.device("meta"), True)
    assert torch.backends.cudnn.benchmark is True and torch.backends.cudnn.deterministic is False
    assert "meta has no native bf16, running in float32" in capsys.readouterr().out
    assert not loop.bf16_supported(torch.device("meta"))
    for native in (False, True):
        monkeypatch.setattr(loop, "bf16_supported", lambda target: native)
        with loop._autocast(torch.device("cpu"), True):
            assert torch.is_autocast_enabled("cpu") is native
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16


@pytest.mark.parametrize("name, quat, lean", [("simple_autoencoder_2_vad", True, True),
                                             ("simple_autoencoder_2_vad", True, False), ("AlexNet", True, False)])
def test_a_training_step_places_every_tensor_on_the_run_device(name, quat, lean):
    """On the meta device a tensor created on the CPU inside the step (forward, loss, backward, optimiser) is a
    device-mismatch error, as it would be on a GPU."""
    meta = device.Runtime(torch.device("meta"))
    kwargs = {"hidden_size": 8} if name != "AlexNet" else {"quat": True, "num_classes": 4, "in_channels": 4,
                                                            "hidden_size": 16}
    net = loop.place_model(create_model(name, **kwargs), meta)
    assert all(p.device.type == "meta" for p in net.parameters())
    shape = (2, 1, 512, 128) if name != "AlexNet" else (2, 4, 64, 64)
    batch = loop._to_device({"x": torch.rand(shape), "target": torch.tensor([0, 1])}, meta.device, False)
    optimizer = loop.make_optimizer(list(net.parameters()), 1e-3, 0.0)
    task = loop.SERTask(4) if name == "AlexNet" else loop.RHemoTask(alpha=1.0, beta=0.0, beta_class=1.0, beta_vad=1.0)
    outputs = task.forward(net, batch, lean=lean)
    if isinstance(task, loop.RHemoTask):
        assert all(o.device.type == "meta" for o in outputs)
        loss = outputs[0].mean()  # the losses' autocast guard has no meta kernel; their maths is device-free
    else:
        loss = nn.functional.cross_entropy(outputs, batch["target"])
    assert loss.device.type == "meta"
    loss.backward()
    optimizer.step()


def test_a_loader_batch_is_one_read_equal_to_the_rows_normalised(tmp_path):
    store = SegmentStore(make_store(tmp_path / "store", FOUR * 2))
    rows = np.array([6, 1, 3, 0, 7, 2])
    norm = compute_normalisation(store.predictors, rows, "max")
    vad = np.arange(18, dtype=np.float32).reshape(6, 3)
    dataset = data.SegmentDataset(store.predictors, rows, np.arange(6) % 4, vad, np.arange(6) + 10, norm)
    batch = next(iter(data.make_eval_loader(dataset, 4, CPU)))
    expected = np.asarray(store.predictors)[rows[:4]] / norm.max
    assert batch["x"].shape == (4, 1, 512, 128) and batch["x"].dtype == torch.float32
    np.testing.assert_array_equal(batch["x"][:, 0].numpy(), expected.astype(np.float32))
    assert batch["target"].tolist() == [0, 1, 2, 3] and batch["group"].tolist() == [10, 11, 12, 13]
    np.testing.assert_array_equal(batch["vad"].numpy(), vad[:4])
    item = dataset[5]
    assert item["x"].shape == (1, 512, 128) and int(item["target"]) == 1 and int(item["group"]) == 15


def test_a_last_pt_of_earlier_versions_with_compact_zero_moments_still_resumes():
    """Earlier versions wrote all-zero Adam moments to last.pt as {'zeros': shape, 'dtype': name}."""
    net = nn.Linear(5, 3)
    optimizer = loop.make_optimizer(list(net.parameters()), 1e-3, 0.0)
    net.weight.grad, net.bias.grad = torch.ones_like(net.weight), torch.zeros_like(net.bias)
    optimizer.step()  # the weight gets moments, the bias a zero gradient: all-zero moments
    saved = optimizer.state_dict()
    legacy = {**saved, "state": {0: saved["state"][0], 1: {"step": saved["state"][1]["step"],
                                                            "exp_avg": {"zeros": [3], "dtype": "float32"},
                                                            "exp_avg_sq": {"zeros": [3], "dtype": "float32"}}}}
    restored = resume.expand_zeros(legacy)
    for index in saved["state"]:
        for key, value in saved["state"][index].items():
            assert torch.equal(restored["state"][index][key], value), (index, key)
    other = loop.make_optimizer(list(nn.Linear(5, 3).parameters()), 1e-3, 0.0)
    other.load_state_dict(restored)
    assert torch.equal(other.state_dict()["state"][1]["exp_avg_sq"], torch.zeros(3))


@pytest.mark.parametrize("holes", [0, 2])
def test_rhemo_resumed_across_idle_and_active_heads_ends_like_the_uninterrupted_run(tmp_path, after_epoch, holes):
    """Stage 1 (heads idle all along: their Adam state is a step count in last.pt) and emo_loss_holes 2 (idle
    in epochs 1 and 3, trained in 2 and 4): Ctrl-C after epoch 1, re-run: the same metrics and checkpoint."""
    store = make_store(tmp_path / "store", FOUR * 3)
    base = dict(num_epochs=4, loss_beta=0.01 if holes else 0.0, emo_loss_holes=holes, label_view="complete")
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert run_script("training_RHemo.py", rhemo_config(store, reference, **base), tmp_path) == 0

    def interrupt(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    after_epoch[:] = [interrupt]
    cfg = rhemo_config(store, resumed, **base)
    assert run_script("training_RHemo.py", cfg, tmp_path) == 130
    saved = ckpt.load_checkpoint(resumed / "last.pt")
    names = [k for k, _ in create_model("simple_autoencoder_2_vad", hidden_size=8).named_parameters()]
    head_states = [saved["optimizer"]["state"][i] for i, name in enumerate(names) if name.startswith("classifier_")]
    assert saved["epoch"] == 1 and head_states and all(set(state) == {"step"} for state in head_states)
    after_epoch[:] = []
    assert run_script("training_RHemo.py", cfg, tmp_path) == 0
    for split in ("train", "val", "test"):
        assert read_metrics(resumed)[split] == read_metrics(reference)[split]
    weights = [ckpt.load_checkpoint(folder / "checkpoint.pt")["state_dict"] for folder in (reference, resumed)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
