"""The authors' pretrained RH-emo weights: download from Google Drive, verify, and load into our model.

The file (``pretrained_RHemo``, ~537 MB, no extension) is presumably a bare ``state_dict`` of
``simple_autoencoder_2_vad(quat=True, hidden_size=4096, num_classes=5)``, possibly saved from a CUDA device.
Our ``models.simple_autoencoder_2_vad`` keeps the authors' key names, so it loads with ``strict=True``.

:func:`load_rhemo` reads either that bare ``state_dict`` or a ``checkpoint.pt`` written by ``training_RHemo.py``
(payload format ``rhemo-ckpt/1``), always with ``torch.load(weights_only=True)`` onto ``map_location``. The head
width, the number of classes and the decoder type are read from the tensors themselves, so a small RH-emo
trained here loads just as well as the authors' one.

:func:`download_pretrained` fetches the file with gdown to a temporary name next to the target, checks it
(SHA-256 when :data:`EXPECTED_SHA256` is set; it must load strictly into our model), and only then moves it
into place, so a failed or corrupt download never replaces a good file.

Example:
    >>> model = load_rhemo("models/pretrained_RHemo")        # doctest: +SKIP
    >>> embedding, *_ = model.get_embeddings(spectrograms)    # (N, 1, 512, 128) -> (N, 4, 64, 64)  # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from models.registry import RHEMO_MODEL
from rhemo.train.checkpoint import CHECKPOINT_FORMAT, CheckpointError, file_sha256, load_checkpoint, \
    plain_state_dict, state_dict_mismatch

REPO_ROOT = Path(__file__).resolve().parents[2]
GDRIVE_ID = "1vCX0KHW44Q9plKTdkgyKZRcyjfgVA7jX"
MANUAL_URL = f"https://drive.google.com/file/d/{GDRIVE_ID}/view"
DEFAULT_PATH = REPO_ROOT / "models" / "pretrained_RHemo"
FILE_NAME = "pretrained_RHemo"
#: SHA-256 of the authors' file. Unknown: it could not be fetched when this code was written (no network).
#: Set it once the hash has been recorded (download_weights.py prints it) to reject altered downloads.
EXPECTED_SHA256: str | None = None
_HEAD_IN = "classifier_discrete.0.weight"
_HEAD_OUT = "classifier_discrete.6.weight"
_QUAT_DECODER_KEY = "t_conv1.r_weight"


class WeightsError(ValueError):
    """RH-emo weights are missing, cannot be downloaded, or do not fit the model; the message says what to do."""


def _manual_hint(output: Path) -> str:
    return (f"Download it by hand from {MANUAL_URL} and save it as {output} (the path that r2he_model_path "
            f"points to; default models/pretrained_RHemo)")


def rhemo_kwargs(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Constructor arguments of ``simple_autoencoder_2_vad`` that fit ``state_dict``.

    hidden_size = rows of ``classifier_discrete.0.weight``, num_classes = rows of ``classifier_discrete.6.weight``,
    quat = the decoder has quaternion weights (``t_conv1.r_weight``).

    >>> sd = {'classifier_discrete.0.weight': torch.zeros(16, 4096),
    ...       'classifier_discrete.6.weight': torch.zeros(5, 16), 't_conv1.r_weight': torch.zeros(1, 1, 3, 3)}
    >>> rhemo_kwargs(sd)
    {'quat': True, 'hidden_size': 16, 'num_classes': 5}
    """
    missing = [k for k in (_HEAD_IN, _HEAD_OUT) if k not in state_dict]
    if missing:
        raise WeightsError(f"not an RH-emo (simple_autoencoder_2_vad) state_dict: key(s) {', '.join(missing)} "
                           f"missing; keys present start with {', '.join(list(state_dict)[:5])}")
    head_in, head_out = state_dict[_HEAD_IN], state_dict[_HEAD_OUT]
    if head_in.ndim != 2 or head_out.ndim != 2:
        raise WeightsError(f"RH-emo head weights must be 2-D, got {_HEAD_IN} {tuple(head_in.shape)} and "
                           f"{_HEAD_OUT} {tuple(head_out.shape)}")
    return {"quat": _QUAT_DECODER_KEY in state_dict, "hidden_size": int(head_in.shape[0]),
            "num_classes": int(head_out.shape[0])}


def load_rhemo(path: str | os.PathLike, map_location: Any = "cpu"):
    """Load RH-emo weights into a new ``simple_autoencoder_2_vad`` (strict key matching), in eval mode.

    ``path`` holds the authors' bare state_dict (``pretrained_RHemo``) or our checkpoint payload (a
    ``checkpoint.pt`` of training_RHemo.py). Tensors are mapped to ``map_location`` (default CPU, so a file
    saved on CUDA loads anywhere). The model reads (N, 1, 512, 128) spectrograms; ``get_embeddings`` gives
    (N, 4, 64, 64).

    Raises WeightsError when the file is missing (pointing to download_weights.py), unreadable, of another
    model, or when its keys/shapes do not match (listing missing and unexpected keys).
    """
    from models import simple_autoencoder_2_vad

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"RH-emo weights not found at {path}: run `python3 download_weights.py --output "
                           f"{path}` to fetch the authors' pretrained RH-emo, or point r2he_model_path to a "
                           f"checkpoint.pt written by training_RHemo.py")
    try:
        payload = load_checkpoint(path, map_location=map_location)
        if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT \
                and payload.get("model_name") != RHEMO_MODEL:
            raise WeightsError(f"{path} holds a {payload.get('model_name')!r} checkpoint, not an RH-emo "
                               f"({RHEMO_MODEL}) one")
        state_dict = plain_state_dict(payload)
    except CheckpointError as exc:
        raise WeightsError(f"cannot read RH-emo weights from {path}: {exc}") from exc
    kwargs = rhemo_kwargs(state_dict)
    if isinstance(payload, dict) and isinstance(payload.get("model_kwargs"), dict):
        dropout = payload["model_kwargs"].get("classifier_dropout")
        if isinstance(dropout, float):
            kwargs["classifier_dropout"] = dropout
    model = simple_autoencoder_2_vad(**kwargs)
    mismatch = state_dict_mismatch(model.state_dict(), state_dict)
    if mismatch:
        raise WeightsError(f"{path} does not match {RHEMO_MODEL}: {mismatch}")
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def verify_weights(path: str | os.PathLike) -> dict[str, Any]:
    """Check a weights file: SHA-256 (when EXPECTED_SHA256 is set) and a strict load. Returns what was found:
    ``{'sha256', 'bytes', 'quat', 'hidden_size', 'num_classes'}``. Raises WeightsError otherwise."""
    path = Path(path)
    sha256 = file_sha256(path)
    if EXPECTED_SHA256 is not None and sha256 != EXPECTED_SHA256.lower():
        raise WeightsError(f"{path} has SHA-256 {sha256}, expected {EXPECTED_SHA256}")
    model = load_rhemo(path)
    return {"sha256": sha256, "bytes": path.stat().st_size, "quat": model.quat, "hidden_size": model.hidden_size,
            "num_classes": model.num_classes}


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def download_pretrained(output: str | os.PathLike = DEFAULT_PATH, force: bool = False,
                        quiet: bool = False) -> Path:
    """Download the authors' pretrained RH-emo to ``output`` (a folder gets ``pretrained_RHemo`` inside).

    An existing file is kept unless ``force``. The download goes to ``<output>.download``, is verified with
    :func:`verify_weights`, and only then replaces ``output``; on any failure the temporary file is removed,
    an existing ``output`` is untouched, and WeightsError says how to fetch the file by hand.
    Returns the path of the weights.
    """
    output = Path(output)
    if output.is_dir():
        output = output / FILE_NAME
    if output.exists() and not force:
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".download")
    _discard(tmp)
    try:
        import gdown
    except ImportError:
        raise WeightsError(f"the gdown package is needed to download the weights (pip install gdown). "
                           f"{_manual_hint(output)}.") from None
    try:
        try:
            result = gdown.download(id=GDRIVE_ID, output=str(tmp), quiet=quiet)
        except Exception as exc:  # gdown raises many kinds (requests, its own, OSError) when offline
            raise WeightsError(f"the file could not be downloaded from Google Drive (id {GDRIVE_ID}): "
                               f"{type(exc).__name__}: {exc}. {_manual_hint(output)}.") from exc
        if result is None or not tmp.is_file() or tmp.stat().st_size == 0:
            raise WeightsError(f"the file could not be downloaded from Google Drive (id {GDRIVE_ID}): gdown "
                               f"returned no file. {_manual_hint(output)}.")
        try:
            verify_weights(tmp)
        except WeightsError as exc:
            kept = f"; the existing {output} was kept" if output.exists() else ""
            raise WeightsError(f"the downloaded file was rejected: {exc}{kept}. {_manual_hint(output)}.") from exc
        os.replace(tmp, output)
    finally:
        _discard(tmp)
    return output
