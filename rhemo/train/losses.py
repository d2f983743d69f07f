"""Loss functions of RH-emo pretraining and of the SER networks, plus the per-epoch emotion-weight schedule.

RH-emo (reference §3) is trained with

    L = alpha·BCE(mean_k recon[:, k], x) + beta·(beta_class·CE(logits, c) + beta_vad·(BCE_v + BCE_a + BCE_d))

where ``recon`` is the decoder output (4 quaternion channels, or 1 for the real-decoder variant) and ``x`` the
normalised input spectrogram. Differences from the original, each deliberate:

* the decoder channels are averaged (``mean`` over K). The authors divide the channel sum by 4 whatever K is,
  which shrinks the real-decoder reconstruction by 4; ``recon_div4=True`` (config ``loss_recon_div4``) does
  that, for their real-decoder ablation;
* the BCE *target* is clamped to [0, 1]. Spectrograms are divided by the training-split maximum, so validation
  and test inputs can exceed 1, where BCE is no longer a log-likelihood (it is unbounded below and can go
  negative); clamping keeps the loss a proper BCE on every split;
* segments without a discrete label (class −1) or without dimensional labels (nan) are left out of the terms
  they lack, instead of being forced into a class.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["rhemo_loss", "reconstruction_loss", "ser_loss", "emotion_weights", "VAD_NAMES"]

VAD_NAMES = ("valence", "arousal", "dominance")


def _check_class_targets(logits: torch.Tensor, targets: torch.Tensor, allow_missing: bool, what: str) -> None:
    if logits.dim() != 2:
        raise ValueError(f"{what}: logits must be (N, C), got shape {tuple(logits.shape)}")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"{what}: class targets must be (N,) = ({logits.shape[0]},), got shape "
                         f"{tuple(targets.shape)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"{what}: class targets must be integer class indices, got dtype {targets.dtype}")
    if targets.numel() == 0:
        return
    low = -1 if allow_missing else 0
    t_min, t_max = int(targets.min()), int(targets.max())
    if t_min < low or t_max >= logits.shape[1]:
        allowed = f"-1 (no label) or 0..{logits.shape[1] - 1}" if allow_missing else f"0..{logits.shape[1] - 1}"
        raise ValueError(f"{what}: class targets must be {allowed}, found values in [{t_min}, {t_max}]")


def ser_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of SER logits (N, C) against integer class targets (N,) in 0..C-1.

    >>> ser_loss(torch.zeros(2, 4), torch.tensor([0, 3])).item()  # uniform logits: log(4)
    1.3862943649291992
    """
    _check_class_targets(logits, targets, allow_missing=False, what="ser_loss")
    return F.cross_entropy(logits, targets.long())


def rhemo_loss(recon: torch.Tensor, target: torch.Tensor, logits: torch.Tensor, vad_pred: torch.Tensor,
               class_target: torch.Tensor, vad_target: torch.Tensor, *, alpha: float = 1.0, beta: float = 0.0,
               beta_class: float = 1.0, beta_vad: float = 1.0, recon_div4: bool = False) -> dict[str, torch.Tensor]:
    """The RH-emo loss and its parts for one batch.

    Args:
        recon: (N, K, T, F) decoder output in [0, 1]; K = 4 (quaternion) or 1 (real decoder).
        target: (N, 1, T, F) normalised input spectrogram (clamped to [0, 1] as the BCE target).
        logits: (N, C) discrete-emotion logits.
        vad_pred: (N, 3) valence/arousal/dominance probabilities (after the sigmoid).
        class_target: (N,) int64 class indices; −1 = no discrete label (row left out of the CE).
        vad_target: (N, 3) float 0/1 binarised V/A/D; nan = no label (row left out of that BCE).
        alpha, beta, beta_class, beta_vad: term weights (stage 1: beta = 0; stage 2: beta = 0.01,
            beta_vad = 100).
        recon_div4: reconstruct with sum_k recon[:, k] / 4 (the authors) instead of the channel mean; the two
            agree for K = 4.

    Returns:
        dict of 0-dim tensors. ``total`` carries the graph; the others are detached:
        ``recon`` = alpha·BCE_rec, ``emo`` = beta·(beta_class·cls + vad), ``cls`` = raw CE,
        ``vad`` = beta_vad·(valence + arousal + dominance), ``valence``/``arousal``/``dominance`` = raw BCEs.
        A term with no labelled row in the batch is 0 (kept attached to the graph with zero gradient, so that
        every head always receives a gradient, which DistributedDataParallel expects).

    Example:
        >>> out = rhemo_loss(torch.full((2, 4, 3, 2), 0.5), torch.zeros(2, 1, 3, 2), torch.zeros(2, 5),
        ...                  torch.full((2, 3), 0.5), torch.tensor([0, -1]), torch.zeros(2, 3), beta=1.0)
        >>> round(out['recon'].item(), 4), round(out['cls'].item(), 4), round(out['valence'].item(), 4)
        (0.6931, 1.6094, 0.6931)
    """
    _check_reconstruction(recon, target, "rhemo_loss")
    n = recon.shape[0]
    if logits.dim() != 2 or logits.shape[0] != n:
        raise ValueError(f"rhemo_loss: logits must be (N, C) with N = {n}, got {tuple(logits.shape)}")
    if vad_pred.shape != (n, 3):
        raise ValueError(f"rhemo_loss: vad_pred must be (N, 3) = ({n}, 3), got {tuple(vad_pred.shape)}")
    if vad_target.shape != (n, 3) or not vad_target.dtype.is_floating_point:
        raise ValueError(f"rhemo_loss: vad_target must be float (N, 3) = ({n}, 3), got "
                         f"{tuple(vad_target.shape)} {vad_target.dtype}")
    _check_class_targets(logits, class_target, allow_missing=True, what="rhemo_loss")
    known = vad_target[~torch.isnan(vad_target)]
    if known.numel() and (known.min() < 0 or known.max() > 1):
        raise ValueError(f"rhemo_loss: vad_target must be 0/1 (or nan), found values in "
                         f"[{known.min().item()}, {known.max().item()}]")

    # BCE is autocast-unsafe on CUDA (it raises under bf16/fp16 autocast), so the loss is always float32.
    with torch.autocast(device_type=recon.device.type, enabled=False):
        return _rhemo_terms(recon.float(), target.float(), logits.float(), vad_pred.float(), class_target.long(),
                            vad_target.float(), alpha, beta, beta_class, beta_vad, recon_div4)


def _check_reconstruction(recon: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if recon.dim() != 4 or recon.shape[1] < 1:
        raise ValueError(f"{what}: recon must be (N, K, T, F), got shape {tuple(recon.shape)}")
    n = recon.shape[0]
    if target.dim() != 4 or target.shape[1] != 1 or target.shape[0] != n or target.shape[2:] != recon.shape[2:]:
        raise ValueError(f"{what}: target must be (N, 1, T, F) = ({n}, 1, {recon.shape[2]}, {recon.shape[3]}) "
                         f"to match recon {tuple(recon.shape)}, got {tuple(target.shape)}")


def _reconstruction_term(recon: torch.Tensor, target: torch.Tensor, alpha: float, recon_div4: bool = False
                         ) -> torch.Tensor:
    # recon_div4: the authors divide the channel sum by 4 whatever the channel count (their real-decoder bug)
    mean_recon = recon.sum(dim=1, keepdim=True) / 4 if recon_div4 else recon.mean(dim=1, keepdim=True)
    return alpha * F.binary_cross_entropy(mean_recon, target.clamp(0.0, 1.0))


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, recon_div4: bool = False
                        ) -> torch.Tensor:
    """``rhemo_loss``'s reconstruction term alone (0-dim, with graph): alpha·BCE(mean_k recon[:, k], x).

    recon (N, K, T, F), target (N, 1, T, F). Equals ``rhemo_loss(...)['total']`` whenever the emotion terms
    weigh 0 (then ``total = recon + 0.0``), without needing the heads' outputs.

    >>> round(reconstruction_loss(torch.full((2, 4, 3, 2), 0.5), torch.zeros(2, 1, 3, 2)).item(), 4)
    0.6931
    """
    _check_reconstruction(recon, target, "reconstruction_loss")
    with torch.autocast(device_type=recon.device.type, enabled=False):
        return _reconstruction_term(recon.float(), target.float(), alpha, recon_div4)


def _rhemo_terms(recon, target, logits, vad_pred, class_target, vad_target, alpha, beta, beta_class, beta_vad,
                 recon_div4):
    l_rec = _reconstruction_term(recon, target, alpha, recon_div4)

    has_class = class_target >= 0
    if bool(has_class.any()):
        l_cls = F.cross_entropy(logits[has_class], class_target[has_class])
    else:
        l_cls = logits.sum() * 0.0

    vad_terms = []
    for k in range(3):
        has_vad = ~torch.isnan(vad_target[:, k])
        if bool(has_vad.any()):
            vad_terms.append(F.binary_cross_entropy(vad_pred[has_vad, k], vad_target[has_vad, k]))
        else:
            vad_terms.append(vad_pred[:, k].sum() * 0.0)
    l_vad = beta_vad * (vad_terms[0] + vad_terms[1] + vad_terms[2])
    l_emo = beta * (beta_class * l_cls + l_vad)
    total = l_rec + l_emo

    out = {"total": total, "recon": l_rec.detach(), "emo": l_emo.detach(), "cls": l_cls.detach(),
           "vad": l_vad.detach()}
    for name, term in zip(VAD_NAMES, vad_terms):
        out[name] = term.detach()
    return out


def emotion_weights(epoch: int, beta: float, beta_vad: float, warmup_epochs: int | None,
                    holes: int | None) -> tuple[float, float]:
    """(beta, beta_vad) to use at 0-based ``epoch`` under the authors' warm-up and "holes" schedule.

    Warm-up: when ``warmup_epochs = W > 0`` and epoch < W, both weights are multiplied by epoch / W (so they
    are 0 at epoch 0). Holes: when ``holes = h > 0`` and epoch % h == 0, both weights are 0 (epoch 0 included).
    0 or None switches either off.

    >>> [emotion_weights(e, 1.0, 10.0, 4, None) for e in (0, 2, 4)]
    [(0.0, 0.0), (0.5, 5.0), (1.0, 10.0)]
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"emotion_weights: epoch must be an int >= 0, got {epoch!r}")
    for name, value in (("warmup_epochs", warmup_epochs), ("holes", holes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"emotion_weights: {name} must be None or an int >= 0, got {value!r}")
    if holes and epoch % holes == 0:
        return 0.0, 0.0
    if warmup_epochs and epoch < warmup_epochs:
        scale = epoch / warmup_epochs
        return beta * scale, beta_vad * scale
    return float(beta), float(beta_vad)
