"""Networks of RH-emo: the RH-emo autoencoder and the real/quaternion SER networks (AlexNet, VGG, ResNet-50).

``from models import *`` gives the names the authors' README uses::

    from models import *
    r2he = simple_autoencoder_2_vad()            # RH-emo, input (N, 1, 512, 128)
    model = resnet50(quat=True, num_classes=4)   # quaternion SER net, input (N, 4, 64, 64)
    emb, _, _, _, _ = r2he.get_embeddings(x)
    logits = model(emb)

plus the registry helpers (``create_model``, ``list_models``, ``accepted_kwargs``, ``input_shape``,
``final_layer_prefix``, ``count_parameters``, ``MODELS``).
"""
from .alexnet import AlexNet
from .autoencoder import RHemo, simple_autoencoder_2_vad
from .registry import (MODELS, accepted_kwargs, count_parameters, create_model, final_layer_prefix, input_shape,
                       list_models)
from .resnet import resnet50
from .vgg import VGGNet

__all__ = [
    "simple_autoencoder_2_vad", "RHemo", "AlexNet", "VGGNet", "resnet50",
    "MODELS", "create_model", "list_models", "accepted_kwargs", "input_shape", "final_layer_prefix",
    "count_parameters",
]
