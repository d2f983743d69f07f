"""RH-emo (simple_autoencoder_2_vad): exact authors' state_dict layout, parameter counts, shapes, encoder API,
and the seed README's usage pattern.

The expected keys, shapes and counts are typed in by hand from the reference description (§2.1), not
generated from our own code. The default-size model (134M parameters) is built once per module.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import *  # noqa: F401,F403 - the seed README's import line must work
from models.autoencoder import ENCODER_KEYS, INPUT_SHAPE, LATENT_SHAPE

H = 4096


def _head_entries(name, n_out, hidden=H, n_in=4096):
    return [(f"{name}.0.weight", (hidden, n_in)), (f"{name}.0.bias", (hidden,)),
            (f"{name}.3.weight", (hidden, hidden)), (f"{name}.3.bias", (hidden,)),
            (f"{name}.6.weight", (n_out, hidden)), (f"{name}.6.bias", (n_out,))]


ENCODER_ENTRIES = [
    ("conv1.weight", (2, 1, 3, 3)), ("conv1.bias", (2,)),
    ("conv2.weight", (4, 2, 3, 3)), ("conv2.bias", (4,)),
    ("conv3.weight", (4, 4, 3, 3)), ("conv3.bias", (4,)),
    ("conv1_bn.weight", (2,)), ("conv1_bn.bias", (2,)), ("conv1_bn.running_mean", (2,)),
    ("conv1_bn.running_var", (2,)), ("conv1_bn.num_batches_tracked", ()),
    ("conv2_bn.weight", (4,)), ("conv2_bn.bias", (4,)), ("conv2_bn.running_mean", (4,)),
    ("conv2_bn.running_var", (4,)), ("conv2_bn.num_batches_tracked", ()),
]
QUAT_DECODER_ENTRIES = [
    ("t_conv1.r_weight", (1, 1, 3, 3)), ("t_conv1.i_weight", (1, 1, 3, 3)), ("t_conv1.j_weight", (1, 1, 3, 3)),
    ("t_conv1.k_weight", (1, 1, 3, 3)), ("t_conv1.bias", (4,)),
    ("t_conv2.r_weight", (1, 1, 3, 3)), ("t_conv2.i_weight", (1, 1, 3, 3)), ("t_conv2.j_weight", (1, 1, 3, 3)),
    ("t_conv2.k_weight", (1, 1, 3, 3)), ("t_conv2.bias", (4,)),
    ("t_conv3.r_weight", (1, 1, 3, 3)), ("t_conv3.i_weight", (1, 1, 3, 3)), ("t_conv3.j_weight", (1, 1, 3, 3)),
    ("t_conv3.k_weight", (1, 1, 3, 3)), ("t_conv3.bias", (4,)),
    ("tconv1_bn.gamma", (1, 1, 1, 1)), ("tconv1_bn.beta", (1, 4, 1, 1)),
    ("tconv1_bn.moving_var", (1,)), ("tconv1_bn.moving_mean", (4,)),
    ("tconv2_bn.gamma", (1, 1, 1, 1)), ("tconv2_bn.beta", (1, 4, 1, 1)),
    ("tconv2_bn.moving_var", (1,)), ("tconv2_bn.moving_mean", (4,)),
]
REAL_DECODER_ENTRIES = [
    ("t_conv1.weight", (4, 4, 3, 3)), ("t_conv1.bias", (4,)),
    ("t_conv2.weight", (4, 2, 3, 3)), ("t_conv2.bias", (2,)),
    ("t_conv3.weight", (2, 1, 3, 3)), ("t_conv3.bias", (1,)),
    ("tconv1_bn.weight", (4,)), ("tconv1_bn.bias", (4,)), ("tconv1_bn.running_mean", (4,)),
    ("tconv1_bn.running_var", (4,)), ("tconv1_bn.num_batches_tracked", ()),
    ("tconv2_bn.weight", (2,)), ("tconv2_bn.bias", (2,)), ("tconv2_bn.running_mean", (2,)),
    ("tconv2_bn.running_var", (2,)), ("tconv2_bn.num_batches_tracked", ()),
]
HEAD_ENTRIES = (_head_entries("classifier_discrete", 5) + _head_entries("classifier_valence", 1)
                + _head_entries("classifier_arousal", 1) + _head_entries("classifier_dominance", 1))
AUTHORS_LAYOUT = ENCODER_ENTRIES + QUAT_DECODER_ENTRIES + HEAD_ENTRIES


@pytest.fixture(scope="module")
def rhemo():
    torch.manual_seed(0)
    return simple_autoencoder_2_vad()


@pytest.fixture(scope="module")
def small():
    """Same architecture with tiny heads, for cheap behavioural tests."""
    torch.manual_seed(1)
    return simple_autoencoder_2_vad(hidden_size=8).eval()


def _authors_state_dict():
    """A state_dict in the authors' layout, built by hand from the reference; small entries get distinct
    values so that we can see they were loaded into the right place."""
    out = {}
    for idx, (key, shape) in enumerate(AUTHORS_LAYOUT):
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7, dtype=torch.int64)
        elif math.prod(shape) <= 64:
            out[key] = torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape) / 100 + idx
        else:
            out[key] = torch.full(shape, float(idx) / 1000)
    return out


def test_authors_layout_has_63_entries():
    assert len(AUTHORS_LAYOUT) == 63


def test_state_dict_keys_order_and_shapes(rhemo):
    got = [(k, tuple(v.shape)) for k, v in rhemo.state_dict().items()]
    assert got == AUTHORS_LAYOUT
    sd = rhemo.state_dict()
    assert sd["conv1_bn.num_batches_tracked"].dtype == torch.int64
    assert all(v.dtype == torch.float32 for k, v in sd.items() if not k.endswith("num_batches_tracked"))


def test_real_decoder_keys_order_and_shapes():
    net = simple_autoencoder_2_vad(quat=False, hidden_size=8, num_classes=3)
    got = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    heads = (_head_entries("classifier_discrete", 3, hidden=8) + _head_entries("classifier_valence", 1, hidden=8)
             + _head_entries("classifier_arousal", 1, hidden=8) + _head_entries("classifier_dominance", 1, hidden=8))
    assert got == ENCODER_ENTRIES + REAL_DECODER_ENTRIES + heads


def test_parameter_counts(rhemo):
    assert count_parameters(rhemo) == 134_283_658
    assert sum(p.numel() for p in rhemo.parameters()) == 134_283_658  # all trainable
    by_part = {}
    for name, p in rhemo.named_parameters():
        part = "encoder" if name.startswith(ENCODER_KEYS) else name.split(".")[0]
        by_part[part] = by_part.get(part, 0) + p.numel()
    assert by_part["encoder"] == 256
    assert sum(by_part[k] for k in ("t_conv1", "t_conv2", "t_conv3", "tconv1_bn", "tconv2_bn")) == 130
    assert by_part["classifier_discrete"] == 33_583_109
    for head in ("classifier_valence", "classifier_arousal", "classifier_dominance"):
        assert by_part[head] == 33_566_721


def test_real_decoder_parameter_count():
    # The meta device skips allocation and init: only the parameter shapes matter here.
    with torch.device("meta"):
        net = simple_autoencoder_2_vad(quat=False)
    assert count_parameters(net) == 134_283_781


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A fresh default RH-emo loaded strictly from a hand-built authors'-layout file (saved + reloaded)."""
    path = tmp_path_factory.mktemp("rhemo") / "pretrained_RHemo"
    torch.save(_authors_state_dict(), path)
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    torch.manual_seed(2)
    net = simple_autoencoder_2_vad()
    result = net.load_state_dict(state, strict=True)
    snapshot = {k: v.clone() for k, v in net.state_dict().items() if v.numel() <= H}
    return net, result, snapshot


def test_authors_state_dict_roundtrip_strict(loaded):
    net, result, snapshot = loaded
    assert not result.missing_keys and not result.unexpected_keys
    expected = _authors_state_dict()
    for key in ("conv1.weight", "conv2_bn.running_var", "t_conv2.j_weight", "tconv1_bn.beta",
                "tconv2_bn.moving_mean", "classifier_valence.6.weight", "classifier_dominance.3.bias"):
        assert torch.equal(snapshot[key], expected[key]), key
    assert int(snapshot["conv2_bn.num_batches_tracked"]) == 7


def test_forward_shapes_and_ranges(small):
    x = torch.rand(2, *INPUT_SHAPE)
    with torch.no_grad():
        recon, logits, v, a, d = small(x)
    assert recon.shape == (2, 4, 512, 128)
    assert logits.shape == (2, 5)
    assert v.shape == a.shape == d.shape == (2, 1)
    for t in (recon, v, a, d):
        assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def test_real_decoder_forward_shape():
    net = simple_autoencoder_2_vad(quat=False, hidden_size=8, num_classes=4).eval()
    with torch.no_grad():
        recon, logits, v, a, d = net(torch.rand(1, *INPUT_SHAPE))
    assert recon.shape == (1, 1, 512, 128) and logits.shape == (1, 4) and d.shape == (1, 1)


def test_encoder_matches_hand_computed_pooling():
    """With centre-tap identity kernels, zero bias and default eval BN, the latent is the max over
    8 (time) × 2 (frequency) blocks, divided by sqrt(1 + eps) once per BN (two BNs)."""
    net = simple_autoencoder_2_vad(hidden_size=8).eval()
    with torch.no_grad():
        for conv in (net.conv1, net.conv2, net.conv3):
            conv.weight.zero_()
            conv.bias.zero_()
            for o in range(conv.out_channels):
                conv.weight[o, o % conv.in_channels, 1, 1] = 1.0
        x = torch.rand(2, 1, 512, 128)
        z = net.encode(x)
    blocks = x.numpy()[:, 0].reshape(2, 64, 8, 64, 2).max(axis=(2, 4)) / (1 + 1e-5)
    assert z.shape == (2, *LATENT_SHAPE)
    for c in range(4):
        np.testing.assert_allclose(z[:, c].numpy(), blocks, rtol=1e-6, atol=1e-7)


def test_each_head_reads_its_own_latent_component(small):
    z0 = torch.rand(2, *LATENT_SHAPE)
    with torch.no_grad():
        base = small.classify(z0)
        for c in range(4):
            z = z0.clone()
            z[:, c] += 1.0
            out = small.classify(z)
            changed = [not torch.allclose(o, b) for o, b in zip(out, base)]
            assert changed == [i == c for i in range(4)], c


def test_get_embeddings_is_encoder_only(small):
    x = torch.rand(2, *INPUT_SHAPE)
    calls = []
    hooks = [getattr(small, n).register_forward_hook(lambda m, i, o, n=n: calls.append(n))
             for n in ("t_conv1", "t_conv2", "t_conv3", "tconv1_bn", "tconv2_bn", "classifier_discrete",
                       "classifier_valence", "classifier_arousal", "classifier_dominance")]
    try:
        with torch.no_grad():
            out = small.get_embeddings(x)
            enc = small.encode(x)
    finally:
        for h in hooks:
            h.remove()
    assert calls == []
    assert len(out) == 5 and out[1:] == ("dummy", "dummy", "dummy", "dummy")
    assert out[0].shape == (2, 4, 64, 64)
    assert torch.equal(out[0], enc)


def test_encode_decode_compose_to_forward(small):
    x = torch.rand(1, *INPUT_SHAPE)
    with torch.no_grad():
        assert torch.equal(small.decode(small.encode(x)), small(x)[0])


def test_encoder_state_dict(rhemo):
    enc = rhemo.encoder_state_dict()
    assert [(k, tuple(v.shape)) for k, v in enc.items()] == ENCODER_ENTRIES
    assert ENCODER_KEYS == ("conv1.", "conv2.", "conv3.", "conv1_bn.", "conv2_bn.")


def test_load_encoder_state_dict_only_changes_encoder():
    donor = simple_autoencoder_2_vad(quat=False, hidden_size=4, num_classes=2)
    with torch.no_grad():
        for p in donor.parameters():
            p.fill_(0.5)
    net = simple_autoencoder_2_vad(hidden_size=8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_encoder_state_dict(donor.state_dict())
    for k, v in net.state_dict().items():
        if k.startswith(ENCODER_KEYS):
            assert torch.equal(v, donor.state_dict()[k]), k
        else:
            assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="conv3.weight"):
        net.load_encoder_state_dict({k: v for k, v in donor.state_dict().items() if k != "conv3.weight"})
    with pytest.raises(ValueError, match="conv2.bias"):
        net.load_encoder_state_dict({**donor.state_dict(), "conv2.bias": [0.0] * 4})
    with pytest.raises(ValueError, match=r"conv1.weight.*\(2, 1, 5, 5\)"):
        net.load_encoder_state_dict({**donor.state_dict(), "conv1.weight": torch.zeros(2, 1, 5, 5)})


def test_init_xavier_normal_heads_zero_bias(rhemo):
    w = rhemo.classifier_valence[3].weight.detach()
    assert abs(float(w.std()) - math.sqrt(2.0 / (H + H))) < 0.01 * math.sqrt(2.0 / (H + H))
    assert abs(float(w.mean())) < 1e-4
    for name, p in rhemo.named_parameters():
        if name.endswith(".bias") and "bn" not in name:
            assert torch.count_nonzero(p) == 0, name
    assert torch.equal(rhemo.conv1_bn.weight.detach(), torch.ones(2))
    assert torch.equal(rhemo.tconv1_bn.gamma.detach(), torch.ones(1, 1, 1, 1))


@pytest.mark.parametrize("bad", [
    torch.rand(2, 1, 512, 127), torch.rand(2, 4, 64, 64), torch.rand(1, 512, 128),
    torch.zeros(2, 1, 512, 128, dtype=torch.int64), np.zeros((2, 1, 512, 128), dtype=np.float32),
])
def test_bad_input_names_expected_shape(small, bad):
    with pytest.raises(ValueError, match=r"\(N, 1, 512, 128\)"):
        small(bad)
    with pytest.raises(ValueError, match=r"\(N, 1, 512, 128\)"):
        small.get_embeddings(bad)


def test_wrong_dtype_is_a_clear_error(small):
    with pytest.raises(ValueError, match="does not match the model's parameters"):
        small(torch.rand(1, 1, 512, 128, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"decode.*\(N, 4, 64, 64\)"):
        small.decode(torch.rand(1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"classify.*\(N, 4, 64, 64\)"):
        small.classify(torch.rand(1, 16384))


@pytest.mark.parametrize("kwargs, match", [
    ({"flatten_dim": 2048}, "flatten_dim"), ({"hidden_size": 0}, "hidden_size"),
    ({"num_classes": 2.5}, "num_classes"), ({"classifier_dropout": 1.5}, "classifier_dropout"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simple_autoencoder_2_vad(**kwargs)


def test_rhemo_alias():
    assert RHemo is simple_autoencoder_2_vad


def test_seed_readme_pseudocode(loaded):
    """The README's loop: resnet50(quat=True) trained on RH-emo embeddings computed under no_grad."""
    pretrained_dict_r2he = {k: v + 1 if v.is_floating_point() else v
                            for k, v in _authors_state_dict().items() if k.startswith(ENCODER_KEYS)}
    quaternion_processing = True
    torch.manual_seed(3)
    model = resnet50(quat=quaternion_processing)
    r2he = loaded[0]  # stands for the README's `simple_autoencoder_2_vad()` (built once per module)
    if quaternion_processing:
        r2he.load_state_dict(pretrained_dict_r2he, strict=False)
    assert torch.equal(r2he.conv2.weight.detach(), pretrained_dict_r2he["conv2.weight"])
    r2he_before = {k: v.clone() for k, v in r2he.encoder_state_dict().items() if "bn" not in k}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    fc_before = model.fc.weight.detach().clone()
    dataloader = [(torch.rand(2, 1, 512, 128), torch.tensor([3, 999]))]
    for e in range(1):
        for i, (sounds, truth) in enumerate(dataloader):
            optimizer.zero_grad()
            if quaternion_processing:
                with torch.no_grad():
                    sounds, _, _, _, _ = r2he.get_embeddings(sounds)
            assert sounds.shape == (2, 4, 64, 64)
            pred = model(sounds)
            loss = F.cross_entropy(pred, truth)
            loss.backward()
            optimizer.step()
    assert pred.shape == (2, 1000)
    assert not torch.equal(model.fc.weight.detach(), fc_before)
    for k, v in r2he.encoder_state_dict().items():
        if k in r2he_before:
            assert torch.equal(v, r2he_before[k]), k
    assert all(p.grad is None for p in r2he.parameters())
