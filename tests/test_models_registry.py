"""models.registry and the package's public names (cheap: tiny models only)."""
import pytest
import torch
from torch import nn

import models
from models import registry
from models.alexnet import AlexNet
from models.autoencoder import simple_autoencoder_2_vad
from models.resnet import resnet50
from models.vgg import VGGNet

# Small constructions of every registered model, with the input each one expects.
SMALL = {
    "simple_autoencoder_2_vad": dict(hidden_size=8, num_classes=3),
    "AlexNet": dict(quat=True, num_classes=3, hidden_size=8),
    "VGGNet": dict(architecture="VGG11", quat=True, num_classes=3, hidden_size=8),
    "resnet50": dict(quat=True, num_classes=3),
}


def test_public_names():
    expected = {"simple_autoencoder_2_vad", "RHemo", "AlexNet", "VGGNet", "resnet50", "MODELS", "create_model",
                "list_models", "accepted_kwargs", "input_shape", "final_layer_prefix", "count_parameters"}
    assert set(models.__all__) == expected
    for name in expected:
        assert hasattr(models, name), name


def test_models_table():
    assert registry.MODELS == {"simple_autoencoder_2_vad": simple_autoencoder_2_vad, "AlexNet": AlexNet,
                               "VGGNet": VGGNet, "resnet50": resnet50}
    assert registry.list_models() == ["AlexNet", "VGGNet", "resnet50", "simple_autoencoder_2_vad"]
    assert sorted(SMALL) == registry.list_models()  # every registered model is exercised below


@pytest.mark.parametrize("name", sorted(SMALL))
def test_create_model_round_trip(name):
    torch.manual_seed(0)
    a = registry.create_model(name, **SMALL[name])
    torch.manual_seed(1)
    b = registry.create_model(name, **SMALL[name])
    assert type(a) is type(b) and isinstance(a, nn.Module)
    assert b.load_state_dict(a.state_dict(), strict=True)
    x = torch.rand(2, *registry.input_shape(name, quat=True))
    a.eval()
    b.eval()
    with torch.no_grad():
        ya, yb = a(x), b(x)
    ya = ya if isinstance(ya, tuple) else (ya,)
    yb = yb if isinstance(yb, tuple) else (yb,)
    assert all(torch.equal(u, v) for u, v in zip(ya, yb))
    final = a.get_submodule(registry.final_layer_prefix(name))
    assert type(final) is nn.Linear and final.out_features == 3


def test_input_shapes():
    assert registry.input_shape("simple_autoencoder_2_vad", True) == (1, 512, 128)
    assert registry.input_shape("simple_autoencoder_2_vad", False) == (1, 512, 128)
    for name in ("AlexNet", "VGGNet", "resnet50"):
        assert registry.input_shape(name, True) == (4, 64, 64)
        assert registry.input_shape(name, False) == (1, 512, 128)


def test_final_layer_prefixes():
    assert registry.final_layer_prefix("AlexNet") == "classifier.6"
    assert registry.final_layer_prefix("VGGNet") == "classifier.6"
    assert registry.final_layer_prefix("resnet50") == "fc"
    assert registry.final_layer_prefix("simple_autoencoder_2_vad") == "classifier_discrete.6"


@pytest.mark.parametrize("call", [
    lambda: registry.create_model("vgg16"),
    lambda: registry.input_shape("ResNet50", True),
    lambda: registry.final_layer_prefix("alexnet"),
])
def test_unknown_name_lists_the_models(call):
    with pytest.raises(ValueError, match=r"AlexNet.*VGGNet.*resnet50.*simple_autoencoder_2_vad"):
        call()


def test_unknown_keyword_is_a_clear_error():
    with pytest.raises(ValueError, match=r"resnet50: unknown argument\(s\) \['hidden_size'\]; accepted: .*quat"):
        registry.create_model("resnet50", hidden_size=64)


def test_accepted_kwargs():
    assert registry.accepted_kwargs("resnet50") == ["pretrained", "progress", "quat", "num_classes", "in_channels"]
    assert registry.accepted_kwargs("simple_autoencoder_2_vad") == [
        "quat", "classifier_quat", "hidden_size", "flatten_dim", "classifier_dropout", "embeddings_dim",
        "num_classes"]
    assert registry.accepted_kwargs("AlexNet")[:4] == ["quat", "num_classes", "hidden_size", "classifier_dropout"]
    assert registry.accepted_kwargs("VGGNet")[:6] == ["architecture", "classifier_dropout", "flatten_dim", "quat",
                                                      "num_classes", "hidden_size"]


def test_count_parameters_by_hand():
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))  # 3*2+2 + 2*1+1 = 11
    assert registry.count_parameters(net) == 11
    net[1].weight.requires_grad_(False)
    assert registry.count_parameters(net) == 9
    assert registry.count_parameters(net, trainable_only=False) == 11
