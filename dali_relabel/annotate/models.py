"""Loading the annotator's classifier: model specs, local weights, input normalization.

A model spec names a constructor: ``torchvision:<name>`` (``torchvision.models.get_model``),
``timm:<name>`` (``timm.create_model``, needs the ``timm`` extra) or ``module.path:factory`` (any
importable callable returning an ``nn.Module``). Weights come only from a local file — nothing is ever
downloaded: the constructors are called without pretrained weights and the file is loaded into the result.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import DaliRelabelError
from ..normalization import IMAGENET_MEAN, IMAGENET_STD

# Seed used by --random-init, so that every rank (and every resumed run) builds the same weights.
RANDOM_INIT_SEED = 0


class ModelError(DaliRelabelError, ValueError):
    """The model spec, its weights or its architecture cannot be used (message says what to do)."""


@dataclass
class LoadedModel:
    """A classifier ready for conversion, with what the store records about it.

    Attributes:
        module: the classifier (eval mode, on the CPU).
        spec: the model spec as given.
        mean, std: RGB normalization for inputs in [0, 1].
        weights: file name of the weights, or None for random init.
        weights_sha256: sha256 of the weights file; for random init, of the initialised state dict.
        random_init: True when the weights are random (tests and benchmarks only).
    """

    module: nn.Module
    spec: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str | None
    weights_sha256: str
    random_init: bool


def build_model(spec: str, *, num_classes: int | None = None) -> nn.Module:
    """Constructs the architecture named by ``spec`` with random weights (never downloads).

    Args:
        spec: ``torchvision:<name>``, ``timm:<name>`` or ``module.path:factory``.
        num_classes: classifier width; None keeps the architecture's default (1000 for ImageNet models).

    Raises:
        ModelError: malformed spec, unknown name, missing timm, or a factory that returns no ``nn.Module``.
    """
    prefix, sep, name = spec.partition(":")
    if not sep or not prefix or not name:
        raise ModelError(f"model spec {spec!r} is not of the form torchvision:<name>, timm:<name> or "
                         "module.path:factory")
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if prefix == "torchvision":
        import torchvision

        try:
            model = torchvision.models.get_model(name, weights=None, **kwargs)
        except ValueError as e:
            raise ModelError(f"torchvision has no model {name!r} ({e}); see torchvision.models.list_models()") from e
    elif prefix == "timm":
        try:
            import timm
        except ImportError as e:
            raise ModelError(f"model spec {spec!r} needs timm: pip install 'dali_relabel[timm]'") from e
        try:
            model = timm.create_model(name, pretrained=False, **kwargs)
        except RuntimeError as e:  # timm's "Unknown model"
            raise ModelError(f"timm has no model {name!r} ({e}); see timm.list_models()") from e
    else:
        try:
            factory = getattr(importlib.import_module(prefix), name)
        except (ImportError, AttributeError) as e:
            raise ModelError(f"cannot import the model factory {spec!r} ({e}): give module.path:callable of an "
                             "importable module (on PYTHONPATH)") from e
        try:
            model = factory(**kwargs)
        except Exception as e:
            detail = " ".join(str(e).split())
            raise ModelError(f"the model factory {spec!r} failed ({type(e).__name__}: {detail}): it must be a callable "
                             "that builds a torch.nn.Module from no arguments (and from num_classes=N when a class "
                             "count is given)") from e
    if not isinstance(model, nn.Module):
        raise ModelError(f"model spec {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def model_normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) the model was trained with: timm's pretrained_cfg when present, else ImageNet's."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean is not None and std is not None and len(mean) == 3 and len(std) == 3:
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    return IMAGENET_MEAN, IMAGENET_STD


def extract_state_dict(checkpoint: object, path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint: the object itself, or its 'state_dict' / 'model' entry.

    A ``module.`` prefix on every key (DistributedDataParallel checkpoints) is removed.
    """
    sd = checkpoint
    if isinstance(sd, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(sd.get(key), dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"weights file {path} holds no state dict: expected a dict of tensors (torch.save("
                         "model.state_dict())) or a checkpoint dict with a 'state_dict' or 'model' entry")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Loads a state dict from a local ``.pt``/``.pth``/``.bin`` (torch.save) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist (give a local file; weights are never downloaded)")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise ModelError(f"{path} is a safetensors file: pip install safetensors") from e
        return extract_state_dict(load_file(str(path)), path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickles with custom classes, truncated files, ...
        raise ModelError(f"cannot read weights file {path} with torch.load(weights_only=True): {e}") from e
    return extract_state_dict(checkpoint, path)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def state_dict_sha256(module: nn.Module) -> str:
    """Content hash of a module's parameters and buffers (names, dtypes, shapes, bytes), in order."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_model(spec: str, *, weights: str | Path | None = None, random_init: bool = False,
               num_classes: int | None = None) -> LoadedModel:
    """Builds the classifier named by ``spec`` and loads its weights from a local file.

    Args:
        spec: see :func:`build_model`.
        weights: local state dict or checkpoint (``torch.save`` or ``.safetensors``).
        random_init: use seeded random weights instead (tests and benchmarks only; recorded in the store).
        num_classes: classifier width if not the architecture's default.

    Raises:
        ModelError: no weights and no ``random_init``, both given, unreadable file, or keys/shapes that
            do not match the architecture.
    """
    if weights is None and not random_init:
        raise ModelError(f"model {spec} needs weights: a local state dict or checkpoint file (e.g. "
                         "torch.save(model.state_dict(), FILE); weights are never downloaded), or random "
                         "initialisation (random_init) for tests and benchmarks")
    if weights is not None and random_init:
        raise ModelError("give either weights or random initialisation (random_init), not both")
    # Seeded even with weights: buffers that checkpoints omit must not differ between ranks.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model = build_model(spec, num_classes=num_classes)
    if weights is not None:
        sd = read_weights(weights)
        try:
            result = model.load_state_dict(sd, strict=False)
        except RuntimeError as e:  # shape mismatches raise even when strict=False
            detail = " ".join(str(e).split())
            raise ModelError(f"weights file {weights} does not fit {spec}: {detail} (a classifier with another number "
                             "of classes needs num_classes)") from e
        problems = []
        if result.missing_keys:
            problems.append(f"missing keys {_first(result.missing_keys)}")
        if result.unexpected_keys:
            problems.append(f"unexpected keys {_first(result.unexpected_keys)}")
        if problems:
            raise ModelError(f"weights file {weights} does not fit {spec}: {'; '.join(problems)} (a classifier with "
                             "another number of classes needs num_classes)")
        digest, weights_name = file_sha256(weights), Path(weights).name
    else:
        digest, weights_name = state_dict_sha256(model), None
    model.eval()
    mean, std = model_normalization(model)
    return LoadedModel(module=model, spec=spec, mean=mean, std=std, weights=weights_name, weights_sha256=digest,
                       random_init=random_init)


def _first(keys: list[str], n: int = 5) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "LoadedModel", "ModelError", "build_model", "load_model",
           "model_normalization", "read_weights", "extract_state_dict"]
