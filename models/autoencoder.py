"""RH-emo: the real-to-quaternion autoencoder of Guizzo et al. (``simple_autoencoder_2_vad``).

A small real CNN encoder turns a magnitude spectrogram (N, 1, 512, 128) into a latent (N, 4, 64, 64) read as
one quaternion channel (r, i, j, k). A decoder (quaternion by default) reconstructs the spectrogram, and four
real MLP heads read one latent component each: r → discrete emotion logits, i → valence, j → arousal,
k → dominance. After training, ``get_embeddings`` (the encoder alone) feeds the quaternion SER networks.

Module names, registration order and shapes reproduce the authors' ``state_dict`` exactly (63 entries), so
their ``pretrained_RHemo`` weights load with ``strict=True``.

Example (tiny heads to keep it fast):

>>> import torch
>>> from models import simple_autoencoder_2_vad
>>> net = simple_autoencoder_2_vad(hidden_size=8).eval()
>>> x = torch.rand(2, 1, 512, 128)
>>> recon, logits, v, a, d = net(x)
>>> tuple(recon.shape), tuple(logits.shape), tuple(v.shape)
((2, 4, 512, 128), (2, 5), (2, 1))
>>> emb, *_ = net.get_embeddings(x)
>>> tuple(emb.shape)
(2, 4, 64, 64)
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from quaternion_layers import QuaternionBatchNorm2d, QuaternionTransposeConv

from ._checks import check_batch, check_dropout, check_positive_int

__all__ = ["simple_autoencoder_2_vad", "RHemo", "ENCODER_KEYS", "INPUT_SHAPE", "LATENT_SHAPE"]

#: (C, T, F) of one input spectrogram.
INPUT_SHAPE = (1, 512, 128)
#: (C, H, W) of the latent / embedding: one quaternion channel of 64×64.
LATENT_SHAPE = (4, 64, 64)
#: state_dict key prefixes of the encoder, i.e. every entry that influences ``get_embeddings``.
ENCODER_KEYS = ("conv1.", "conv2.", "conv3.", "conv1_bn.", "conv2_bn.")

_NAME = "simple_autoencoder_2_vad"
_LATENT_SIZE = LATENT_SHAPE[0] * LATENT_SHAPE[1] * LATENT_SHAPE[2]  # 16384


def _head(in_features: int, hidden: int, out_features: int, p: float) -> nn.Sequential:
    """Linear→ReLU→Dropout→Linear→ReLU→Dropout→Linear; parameters at indices 0, 3, 6 (authors' keys)."""
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(p),
        nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(p),
        nn.Linear(hidden, out_features),
    )


class simple_autoencoder_2_vad(nn.Module):  # noqa: N801 - the authors' name, kept for their checkpoints
    """RH-emo autoencoder with a discrete-emotion head and valence/arousal/dominance heads.

    Args:
        quat: quaternion decoder (output (N,4,512,128)); False → real decoder (output (N,1,512,128)).
        classifier_quat: accepted for compatibility and ignored: the heads are always real, as in the original.
        hidden_size: width H of the two hidden layers of each head.
        flatten_dim: size of the flattened latent; must be 16384 (= 4·64·64). Each head reads a quarter.
        classifier_dropout: dropout probability in the heads.
        embeddings_dim: accepted for compatibility and ignored, as in the original.
        num_classes: number of discrete emotion logits.

    Shapes:
        input ``x``: (N, 1, 512, 128) float, values in [0, 1].
        ``forward(x)`` → (recon, logits (N, num_classes), valence (N,1), arousal (N,1), dominance (N,1));
        recon is (N, 4, 512, 128) [quat] or (N, 1, 512, 128) [real]; recon and V/A/D go through a sigmoid.
    """

    def __init__(self, quat: bool = True, classifier_quat: bool = True, hidden_size: int = 4096,
                 flatten_dim: int = 16384, classifier_dropout: float = 0.5,
                 embeddings_dim: Sequence[int] = (64, 64), num_classes: int = 5) -> None:
        super().__init__()
        hidden_size = check_positive_int(hidden_size, "hidden_size", _NAME)
        num_classes = check_positive_int(num_classes, "num_classes", _NAME)
        p = check_dropout(classifier_dropout, _NAME)
        if flatten_dim != _LATENT_SIZE:
            raise ValueError(f"{_NAME}: flatten_dim must be {_LATENT_SIZE} (latent {LATENT_SHAPE} for input "
                             f"{INPUT_SHAPE}), got {flatten_dim!r}")
        self.quat = bool(quat)
        self.hidden_size = hidden_size
        self.num_classes = num_classes

        # Registration order below is the authors' state_dict order; do not reorder.
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv1_bn = nn.BatchNorm2d(2)
        self.conv2_bn = nn.BatchNorm2d(4)

        up = dict(kernel_size=3, stride=(2, 1), padding=1, output_padding=(1, 0))
        last = dict(kernel_size=3, stride=2, padding=1, output_padding=1)
        if self.quat:
            self.t_conv1 = QuaternionTransposeConv(4, 4, **up)
            self.t_conv2 = QuaternionTransposeConv(4, 4, **up)
            self.t_conv3 = QuaternionTransposeConv(4, 4, **last)
            self.tconv1_bn = QuaternionBatchNorm2d(4)
            self.tconv2_bn = QuaternionBatchNorm2d(4)
        else:
            self.t_conv1 = nn.ConvTranspose2d(4, 4, **up)
            self.t_conv2 = nn.ConvTranspose2d(4, 2, **up)
            self.t_conv3 = nn.ConvTranspose2d(2, 1, **last)
            self.tconv1_bn = nn.BatchNorm2d(4)
            self.tconv2_bn = nn.BatchNorm2d(2)

        head_in = flatten_dim // 4
        self.classifier_discrete = _head(head_in, hidden_size, num_classes, p)
        self.classifier_valence = _head(head_in, hidden_size, 1, p)
        self.classifier_arousal = _head(head_in, hidden_size, 1, p)
        self.classifier_dominance = _head(head_in, hidden_size, 1, p)

        # Real layers get Xavier-normal weights and zero bias; quaternion layers keep their own init.
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Spectrogram (N, 1, 512, 128) → latent (N, 4, 64, 64). Order per block: conv → ReLU → pool → BN."""
        check_batch(x, _NAME, INPUT_SHAPE[0], INPUT_SHAPE[1:], dtype=self.conv1.weight.dtype)
        x = self.conv1_bn(F.max_pool2d(F.relu(self.conv1(x)), (2, 2)))
        x = self.conv2_bn(F.max_pool2d(F.relu(self.conv2(x)), (2, 1)))
        return F.max_pool2d(F.relu(self.conv3(x)), (2, 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (N, 4, 64, 64) → reconstruction (N, 4, 512, 128) [quat] or (N, 1, 512, 128), in (0, 1)."""
        check_batch(z, f"{_NAME}.decode", LATENT_SHAPE[0], LATENT_SHAPE[1:], dtype=self.conv1.weight.dtype)
        z = self.tconv1_bn(F.relu(self.t_conv1(z)))
        z = self.tconv2_bn(F.relu(self.t_conv2(z)))
        return torch.sigmoid(self.t_conv3(z))

    def classify(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent (N, 4, 64, 64) → (logits (N, C), valence, arousal, dominance (N, 1) each, sigmoid)."""
        check_batch(z, f"{_NAME}.classify", LATENT_SHAPE[0], LATENT_SHAPE[1:], dtype=self.conv1.weight.dtype)
        flat = z.flatten(2)  # (N, 4, 4096): component c of the quaternion feeds head c
        logits = self.classifier_discrete(flat[:, 0])
        valence = torch.sigmoid(self.classifier_valence(flat[:, 1]))
        arousal = torch.sigmoid(self.classifier_arousal(flat[:, 2]))
        dominance = torch.sigmoid(self.classifier_dominance(flat[:, 3]))
        return logits, valence, arousal, dominance

    def forward(self, x: torch.Tensor):
        """(N, 1, 512, 128) → (recon, logits (N, C), valence (N, 1), arousal (N, 1), dominance (N, 1))."""
        z = self.encode(x)
        return (self.decode(z),) + self.classify(z)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder and decoder only: (N, 1, 512, 128) → recon, without running the heads (stage-1 training,
        where the emotion terms have weight 0; the result equals ``forward(x)[0]``)."""
        return self.decode(self.encode(x))

    def get_embeddings(self, x: torch.Tensor):
        """Encoder only: (N, 1, 512, 128) → ((N, 4, 64, 64), 'dummy', 'dummy', 'dummy', 'dummy').

        The four placeholders keep the authors' call pattern ``emb, _, _, _, _ = r2he.get_embeddings(x)``.
        """
        return self.encode(x), "dummy", "dummy", "dummy", "dummy"

    def encoder_state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        """The state_dict entries that determine the embedding (conv1-3, conv1_bn, conv2_bn incl. stats)."""
        return OrderedDict((k, v) for k, v in self.state_dict().items() if k.startswith(ENCODER_KEYS))

    def load_encoder_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load only the encoder from a full RH-emo state_dict or from ``encoder_state_dict()`` output.

        Every encoder key must be present with the right shape (ValueError otherwise); other keys
        (decoder, heads) are ignored, so a checkpoint with a different head size or decoder still works.
        """
        own = self.encoder_state_dict()
        missing = [k for k in own if k not in state_dict]
        if missing:
            raise ValueError(f"{_NAME}: encoder state_dict lacks keys {missing}")
        not_tensors = [k for k in own if not isinstance(state_dict[k], torch.Tensor)]
        if not_tensors:
            raise ValueError(f"{_NAME}: encoder state_dict entries {not_tensors} are not tensors")
        bad = {k: (tuple(state_dict[k].shape), tuple(v.shape)) for k, v in own.items()
               if tuple(state_dict[k].shape) != tuple(v.shape)}
        if bad:
            raise ValueError(f"{_NAME}: encoder shape mismatch (got, expected): {bad}")
        self.load_state_dict({k: state_dict[k] for k in own}, strict=False)

    def extra_repr(self) -> str:
        return f"quat={self.quat}, hidden_size={self.hidden_size}, num_classes={self.num_classes}"


#: Readable alias.
RHemo = simple_autoencoder_2_vad

