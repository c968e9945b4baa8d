"""Loading backbone weights: torchvision's ImageNet weights, or a local state_dict file.

Two sources, one checker. ``pretrained=True`` goes through torchvision's weights API
(``ResNet18_Weights.IMAGENET1K_V1`` and so on), which downloads into the torch hub
cache; without internet access that fails, and the error says how to get the file in
by hand. ``weights_path=`` reads a local file with ``torch.load(weights_only=True)``:
only tensors and plain containers are unpickled, never arbitrary objects.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torchvision.models import WeightsEnum

__all__ = [
    "PretrainedWeightsUnavailableError",
    "WeightsFileError",
    "download_imagenet_state_dict",
    "read_state_dict",
    "load_backbone_state_dict",
]


class PretrainedWeightsUnavailableError(RuntimeError):
    """torchvision's ImageNet weights could not be fetched (usually: no internet)."""


class WeightsFileError(ValueError):
    """A weights file that cannot be used: unreadable, unsafe or not a state_dict."""


def download_imagenet_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """The state_dict of ``weights`` through torchvision's weights API (downloaded into
    the torch hub cache on first use, hash-checked)."""
    try:
        return weights.get_state_dict(progress=True, check_hash=True, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as error:  # URLError is an OSError
        file_name = weights.url.rsplit("/", 1)[-1]
        cache = os.path.join(torch.hub.get_dir(), "checkpoints")
        raise PretrainedWeightsUnavailableError(
            f"could not fetch torchvision's ImageNet weights {weights} from {weights.url} ({error}). "
            f"This machine may have no internet access: download {file_name} on a machine that has, "
            f"copy it here and pass weights_path='/path/to/{file_name}' instead of pretrained=True "
            f"(or put it in {cache}/, where pretrained=True looks first)."
        ) from error


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict read from ``path`` with ``weights_only=True``, onto the CPU."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights_path {path!r} is not a file")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        raise WeightsFileError(
            f"refused to load {path!r}: it holds pickled objects other than tensors and plain "
            f"containers, and weights are only read with torch.load(weights_only=True), which never "
            f"runs code from the file. Save a plain state_dict instead: "
            f"torch.save(model.state_dict(), path). ({error})"
        ) from error
    except RuntimeError as error:
        raise WeightsFileError(f"could not read {path!r} as a torch weights file: {error}") from error
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsFileError(
            f"{path!r} does not hold a state_dict (a mapping from parameter names to tensors); "
            f"got {type(state).__name__}. If it is a training checkpoint, save its model state_dict alone."
        )
    return dict(state)


def load_backbone_state_dict(
    backbone: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    head_prefixes: Sequence[str] = (),
) -> None:
    """Load ``state`` into ``backbone``, requiring every backbone key to match.

    Keys under ``head_prefixes`` (the ImageNet classifier, GoogLeNet's auxiliary heads)
    are dropped on both sides: the package cuts them off anyway, and a checkpoint
    fine-tuned with another number of classes must still load. Any other missing or
    unexpected key, or a shape mismatch, raises :class:`WeightsFileError` naming the
    keys and ``source``.
    """
    is_head = lambda key: any(key.startswith(prefix) for prefix in head_prefixes)  # noqa: E731
    body = {k: v for k, v in state.items() if not is_head(k)}
    expected = {k for k in backbone.state_dict() if not is_head(k)}
    # BatchNorm's counter is absent from checkpoints older than PyTorch 0.4.1 (torchvision's
    # own ResNet files among them); BatchNorm fills it in itself when it is missing.
    missing = sorted(k for k in expected - set(body) if not k.endswith(".num_batches_tracked"))
    unexpected = sorted(set(body) - expected)
    if missing or unexpected:
        hint = ""
        if any(k.startswith("module.") for k in unexpected):
            hint = " (keys start with 'module.': strip that DataParallel prefix before saving)"
        raise WeightsFileError(
            f"{source} does not match the {type(backbone).__name__} backbone{hint}: "
            f"{len(missing)} missing key(s) {_preview(missing)}, "
            f"{len(unexpected)} unexpected key(s) {_preview(unexpected)}"
        )
    try:
        backbone.load_state_dict(body, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise WeightsFileError(f"{source} does not fit the {type(backbone).__name__} backbone: {error}") from error


def _preview(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}]"
