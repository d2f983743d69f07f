"""SER networks (AlexNet, VGGNet, resnet50), real and quaternion, parametrized over the registry.

Parameter counts, state_dict keys and intermediate shapes are the reference's measured values (§2.3),
typed in by hand. Each big network is built at most once per module (cached); forward passes use batch 1-2.
"""
import math

import pytest
import torch
from torch import nn

from quaternion_layers import QuaternionBatchNorm2d, QuaternionConv, QuaternionLinear
from models import AlexNet, VGGNet, resnet50
from models.registry import count_parameters, create_model, final_layer_prefix, input_shape, list_models
from models.resnet import resnet18
from models.vgg import VGG_types, flatten_size

SER = ("AlexNet", "VGGNet", "resnet50")
NUM_CLASSES = 4
# (name, quat) → trainable parameters with num_classes=4 (reference §2.3, measured on the original code).
EXPECTED_PARAMS = {
    ("AlexNet", False): 57_004_740, ("AlexNet", True): 14_276_292,
    ("VGGNet", False): 165_733_060, ("VGGNet", True): 9_998_020,
    ("resnet50", False): 23_509_956, ("resnet50", True): 5_905_908,
}
CASES = sorted(EXPECTED_PARAMS)
IDS = [f"{n}-{'quat' if q else 'real'}" for n, q in CASES]
# Output shape (C, H, W) of named submodules on one example of the expected input.
INTERMEDIATE = {
    ("AlexNet", True): {"features": (256, 1, 1), "avgpool": (256, 6, 6)},
    ("AlexNet", False): {"avgpool": (256, 6, 6)},
    ("VGGNet", True): {"features": (512, 2, 2)},
    ("VGGNet", False): {"features": (512, 16, 4)},
    ("resnet50", True): {"maxpool": (64, 16, 16), "layer1": (256, 16, 16), "layer2": (512, 8, 8),
                         "layer3": (1024, 4, 4), "layer4": (2048, 2, 2)},
    ("resnet50", False): {"layer1": (256, 128, 32), "layer4": (2048, 16, 4)},
}

_BUILT = {}


def built(name, quat):
    """Each (name, quat) network once per module, seeded."""
    if (name, quat) not in _BUILT:
        torch.manual_seed(0)
        _BUILT[(name, quat)] = create_model(name, quat=quat, num_classes=NUM_CLASSES)
    return _BUILT[(name, quat)]


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    yield
    _BUILT.clear()


def test_registry_lists_the_ser_networks():
    assert set(SER) <= set(list_models())
    assert {n for n, _ in CASES} == set(SER)


@pytest.mark.parametrize("name, quat", CASES, ids=IDS)
def test_parameter_count(name, quat):
    assert count_parameters(built(name, quat)) == EXPECTED_PARAMS[(name, quat)]


@pytest.mark.parametrize("name, quat", CASES, ids=IDS)
def test_forward_shapes(name, quat):
    net = built(name, quat).eval()
    batch = 2 if quat else 1
    x = torch.rand(batch, *input_shape(name, quat))
    seen = {}
    hooks = [net.get_submodule(m).register_forward_hook(lambda mod, i, o, m=m: seen.__setitem__(m, tuple(o.shape[1:])))
             for m in INTERMEDIATE[(name, quat)]]
    try:
        with torch.no_grad():
            out = net(x)
    finally:
        for h in hooks:
            h.remove()
    assert out.shape == (batch, NUM_CLASSES)
    assert torch.isfinite(out).all()
    assert seen == INTERMEDIATE[(name, quat)]


@pytest.mark.parametrize("name, quat", CASES, ids=IDS)
def test_final_layer_is_the_last_real_linear(name, quat):
    net = built(name, quat)
    prefix = final_layer_prefix(name)
    layer = net.get_submodule(prefix)
    assert type(layer) is nn.Linear and layer.out_features == NUM_CLASSES
    linears = [n for n, m in net.named_modules() if isinstance(m, (nn.Linear, QuaternionLinear))]
    assert linears[-1] == prefix
    assert f"{prefix}.weight" in net.state_dict() and f"{prefix}.bias" in net.state_dict()
    real = [n for n, m in net.named_modules() if type(m) in (nn.Linear, nn.Conv2d, nn.BatchNorm2d)]
    quaternion = [n for n, m in net.named_modules() if isinstance(m, (QuaternionLinear, QuaternionConv,
                                                                      QuaternionBatchNorm2d))]
    if quat:
        assert real == [prefix] and quaternion
    else:
        assert not quaternion


def test_quaternion_train_step_reaches_first_layer():
    net = built("AlexNet", True).train()
    x = torch.rand(2, 4, 64, 64)
    net.zero_grad()
    loss = nn.functional.cross_entropy(net(x), torch.tensor([0, 3]))
    loss.backward()
    assert net.features[0].r_weight.grad is not None and net.features[0].r_weight.grad.abs().sum() > 0
    net.zero_grad()


def _shapes(net):
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def test_alexnet_quaternion_keys():
    sd = _shapes(built("AlexNet", True))
    assert sd["features.0.r_weight"] == (16, 1, 11, 11)
    for i in (0, 3, 6, 8, 10):
        assert {f"features.{i}.{c}_weight" for c in "rijk"} | {f"features.{i}.bias"} <= set(sd)
    assert sd["classifier.1.r_weight"] == (2304, 1024) and sd["classifier.1.k_weight"] == (2304, 1024)
    assert sd["classifier.4.j_weight"] == (1024, 1024)
    assert sd["classifier.6.weight"] == (NUM_CLASSES, 4096)
    assert len(sd) == 5 * 5 + 2 * 5 + 2


def test_alexnet_real_keys():
    sd = _shapes(built("AlexNet", False))
    assert sd["features.0.weight"] == (64, 1, 11, 11)
    assert sd["classifier.1.weight"] == (4096, 9216) and sd["classifier.4.weight"] == (4096, 4096)
    assert sd["classifier.6.weight"] == (NUM_CLASSES, 4096)


def test_vgg16_quaternion_keys():
    sd = _shapes(built("VGGNet", True))
    convs = sorted({int(k.split(".")[1]) for k in sd if k.startswith("features.")})
    assert convs == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert sd["features.0.r_weight"] == (16, 1, 3, 3) and sd["features.28.bias"] == (512,)
    assert sd["classifier.0.r_weight"] == (512, 1024) and sd["classifier.3.i_weight"] == (1024, 1024)
    assert sd["classifier.6.weight"] == (NUM_CLASSES, 4096)
    assert not any("bn" in k or "running" in k for k in sd)


def test_resnet50_quaternion_keys():
    sd = _shapes(built("resnet50", True))
    assert sd["conv1.r_weight"] == (16, 1, 7, 7) and "conv1.bias" not in sd
    assert sd["bn1.gamma"] == (1, 16, 1, 1) and sd["bn1.beta"] == (1, 64, 1, 1)
    assert sd["bn1.moving_var"] == (1,) and sd["bn1.moving_mean"] == (4,)
    assert sd["layer1.0.conv1.r_weight"] == (16, 16, 1, 1)
    assert sd["layer1.0.downsample.0.r_weight"] == (64, 16, 1, 1)
    assert sd["layer4.2.bn3.gamma"] == (1, 512, 1, 1)
    assert sd["fc.weight"] == (NUM_CLASSES, 2048)
    assert not any(k.endswith(".bias") for k in sd if k.split(".")[-2].startswith("conv")
                   or ".downsample.0." in k)


def test_resnet50_real_keys_and_torchvision_init():
    net = built("resnet50", False)
    sd = _shapes(net)
    assert sd["conv1.weight"] == (64, 1, 7, 7) and sd["bn1.running_mean"] == (64,)
    assert sd["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert sd["layer3.5.conv3.weight"] == (1024, 256, 1, 1)
    w = net.layer4[0].conv2.weight.detach()
    expected_std = math.sqrt(2.0 / (512 * 3 * 3))  # kaiming normal, fan_out, ReLU gain
    assert abs(float(w.std()) - expected_std) < 0.02 * expected_std
    assert torch.equal(net.layer2[1].bn2.weight.detach(), torch.ones(128))
    assert torch.count_nonzero(net.layer2[1].bn2.bias.detach()) == 0


@pytest.mark.parametrize("quat", [False, True], ids=["real", "quat"])
def test_resnet_stride_is_on_the_3x3(quat):
    """v1.5: in the first block of layer2 conv1 (1×1) keeps the size, conv2 (3×3) halves it."""
    net = built("resnet50", quat).eval()
    block = net.layer2[0]
    seen = {}
    hooks = [getattr(block, n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, tuple(o.shape[2:])))
             for n in ("conv1", "conv2")]
    x = torch.rand(1, *input_shape("resnet50", quat))
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    h, w = seen["conv1"]
    assert seen["conv2"] == (h // 2, w // 2)


@pytest.mark.parametrize("ctor, kwargs, expected", [
    (AlexNet, {}, 61_085_352),
    (resnet50, {}, 25_550_760),
    (AlexNet, {"num_classes": 4, "in_channels": 4}, 57_027_972),
    (resnet50, {"num_classes": 4, "in_channels": 4}, 23_519_364),
    (VGGNet, {"flatten_dim": 2048}, 39_903_940),
    (VGGNet, {"in_channels": 4}, 39_905_668),  # derived flatten 2048 for a 4-channel input
    (resnet18, {}, 11_683_240),
], ids=["alexnet-1000", "resnet50-1000", "alexnet-real4ch", "resnet50-real4ch", "vgg16-flatten2048",
        "vgg16-real4ch", "resnet18-1000"])
def test_real_variant_counts(ctor, kwargs, expected):
    with torch.device("meta"):  # shapes only: no allocation, no init
        net = ctor(**kwargs)
    assert count_parameters(net) == expected


def test_resnet18_quaternion_forward():
    torch.manual_seed(0)
    net = resnet18(quat=True, num_classes=3).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 4, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize("ctor", [resnet50, resnet18])
def test_pretrained_is_a_clear_error(ctor):
    with pytest.raises(ValueError, match="no ImageNet weights"):
        ctor(pretrained=True)


def test_vgg_flatten_sizes():
    assert flatten_size("VGG16", (1, 512, 128)) == 32768
    assert flatten_size("VGG16", (4, 64, 64)) == 2048
    assert flatten_size("simple", (1, 512, 128)) == 128 * 128 * 32
    assert built("VGGNet", False).flatten_dim == 32768 and built("VGGNet", True).flatten_dim == 2048
    assert set(VGG_types) == {"simple", "VGG11", "VGG13", "VGG16", "VGG19"}
    with pytest.raises(ValueError, match="too small"):
        flatten_size("VGG16", (4, 16, 16))


def test_vgg_explicit_flatten_dim_is_honoured():
    net = VGGNet("simple", flatten_dim=1000, hidden_size=8)
    assert net.classifier[0].in_features == 1000
    with pytest.raises(ValueError, match="flatten_dim=524288"):
        net(torch.rand(1, 1, 512, 128))
    net = VGGNet("simple", hidden_size=8, input_shape=(1, 32, 16))
    assert net.flatten_dim == 128 * 8 * 4
    assert net(torch.rand(2, 1, 32, 16)).shape == (2, 4)


def test_vgg_forward_prints_nothing(capsys):
    x = torch.rand(1, 4, 16, 16)
    VGGNet("simple", quat=True, hidden_size=8, input_shape=(4, 16, 16))(x)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name, quat", CASES, ids=IDS)
def test_wrong_channels_is_a_clear_error(name, quat):
    net = built(name, quat)
    c, t, f = input_shape(name, quat)
    with pytest.raises(ValueError, match=rf"\(N, {c}, "):
        net(torch.rand(1, 5 - c if c in (1, 4) else 1, t, f))
    with pytest.raises(ValueError, match=name if name != "resnet50" else "ResNet"):
        net(torch.rand(c, t, f))


@pytest.mark.parametrize("name, quat", [("AlexNet", True), ("resnet50", False)], ids=["alexnet", "resnet50"])
def test_wrong_dtype_is_a_clear_error(name, quat):
    x = torch.rand(1, *input_shape(name, quat), dtype=torch.float64)
    with pytest.raises(ValueError, match="dtype torch.float64 does not match"):
        built(name, quat)(x)


def test_bf16_input_is_accepted_under_autocast():
    net = AlexNet(quat=True, num_classes=2, hidden_size=8).eval()
    x = torch.rand(1, 4, 64, 64, dtype=torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(x).shape == (1, 2)


@pytest.mark.parametrize("make, match", [
    (lambda: AlexNet(quat=True, hidden_size=6), "divisible by 4"),
    (lambda: VGGNet(quat=True, hidden_size=10), "divisible by 4"),
    (lambda: VGGNet("VGG17"), "VGG16"),
    (lambda: AlexNet(in_channels=0), "in_channels"),
    (lambda: resnet50(quat=True, in_channels=6), "divisible by 4"),
    (lambda: AlexNet(classifier_dropout=-0.1), "classifier_dropout"),
    (lambda: VGGNet(input_shape=(4, 64, 64)), "input_shape"),
])
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_alexnet_too_small_input():
    net = AlexNet(quat=True, num_classes=2, hidden_size=8)
    with pytest.raises(ValueError, match=r"H>=63"):
        net(torch.rand(1, 4, 62, 62))
    assert net.eval()(torch.rand(1, 4, 63, 63)).shape == (1, 2)
