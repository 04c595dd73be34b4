"""Builders for the allow-listed models, and canonical weight bytes.

Buyers choose a model by name and bounded integer parameters; they never
upload code. Every model takes flat float32 features ``(batch, features)`` and
returns class logits ``(batch, classes)``; the CNN reshapes square inputs
(digits: 64 features = 8x8 pixels) to one-channel images.

Weights are serialized canonically (:func:`encode_weights`): parameters in
name order, each as little-endian float32 bytes, inside a canonical codec
map. ``torch.save`` is not used because its bytes may vary.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from consensus import codec
from torch import nn

from ml.spec import ModelSpec

WEIGHTS_FORMAT = "dmchain-weights-v1"
MAX_PARAMETERS = 500_000  # 2 MB of float32, well under the codec's 4 MiB limit


class ModelError(ValueError):
    """A model cannot be built for the data, or weight bytes do not parse."""


class _ImageCNN(nn.Module):
    """Conv3x3 + ReLU (+ 2x2 max-pool after the first layer) stacks, then a linear head."""

    def __init__(self, side: int, channels: tuple[int, ...], classes: int) -> None:
        super().__init__()
        self.side = side
        layers: list[nn.Module] = []
        in_ch, size = 1, side
        for i, ch in enumerate(channels):
            layers += [nn.Conv2d(in_ch, ch, kernel_size=3, padding=1), nn.ReLU()]
            if i == 0 and size >= 4:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            in_ch = ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(in_ch * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.features(x.reshape(-1, 1, self.side, self.side))
        out: torch.Tensor = self.head(h.flatten(1))
        return out


def build_model(spec: ModelSpec, features: int, classes: int) -> nn.Module:
    """Return a freshly initialised model (uses torch's global generator; seed it first).

    Raises ModelError if the data shape does not fit the model (a CNN needs a
    square feature count) or the model exceeds MAX_PARAMETERS.
    """
    if features < 1 or classes < 2:
        raise ModelError(f"need features >= 1 and classes >= 2, got {features}, {classes}")
    model: nn.Module
    if spec.name == "logreg":
        model = nn.Linear(features, classes)
    elif spec.name == "mlp":
        layers: list[nn.Module] = []
        width = features
        for h in spec.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, classes))
        model = nn.Sequential(*layers)
    elif spec.name == "cnn":
        side = math.isqrt(features)
        if side * side != features:
            raise ModelError(f"cnn needs a square feature count, got {features}")
        model = _ImageCNN(side, spec.hidden, classes)
    else:
        raise ModelError(f"model {spec.name!r} is not in the allow-list")
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise ModelError(f"model has {count} parameters, limit {MAX_PARAMETERS}")
    return model


def get_named_parameters(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Return the model's parameters sorted by name (the canonical order)."""
    return sorted(model.named_parameters(), key=lambda item: item[0])


def get_vector(model: nn.Module) -> torch.Tensor:
    """Return all parameters, in name order, as one detached float32 vector."""
    return torch.cat([p.detach().reshape(-1) for _, p in get_named_parameters(model)]).clone()


def process_load_vector(model: nn.Module, vector: torch.Tensor) -> None:
    """Copy a flat vector (as made by :func:`get_vector`) into the model's parameters."""
    total = sum(p.numel() for p in model.parameters())
    if vector.numel() != total:
        raise ModelError(f"vector has {vector.numel()} values, model needs {total}")
    offset = 0
    with torch.no_grad():
        for _, p in get_named_parameters(model):
            n = p.numel()
            p.copy_(vector[offset : offset + n].reshape(p.shape))
            offset += n


def encode_weights(model: nn.Module) -> bytes:
    """Return canonical weight bytes: name, shape and little-endian float32 data per tensor."""
    tensors = []
    for name, p in get_named_parameters(model):
        data = p.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        tensors.append([name, list(p.shape), data])
    return codec.encode({"format": WEIGHTS_FORMAT, "tensors": tensors})


def decode_weights(data: bytes) -> dict[str, np.ndarray]:
    """Parse canonical weight bytes into ``{name: float32 array}``; raises ModelError."""
    try:
        obj = codec.decode(data)
    except codec.CodecError as exc:
        raise ModelError(f"bad weight encoding: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != WEIGHTS_FORMAT:
        raise ModelError(f"weights are not in format {WEIGHTS_FORMAT}")
    tensors = obj.get("tensors")
    if not isinstance(tensors, list):
        raise ModelError("weights lack a tensor list")
    out: dict[str, np.ndarray] = {}
    for item in tensors:
        if not (isinstance(item, list) and len(item) == 3):
            raise ModelError("tensor entry is not [name, shape, data]")
        name, shape, raw = item
        ok_shape = isinstance(shape, list) and all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_PARAMETERS
            for s in shape
        )
        if not isinstance(name, str) or not ok_shape or not isinstance(raw, bytes):
            raise ModelError("tensor entry has a bad name, shape or data")
        if name in out or len(raw) != 4 * math.prod(shape):
            raise ModelError(f"tensor {name!r} is duplicated or its data does not fit its shape")
        out[name] = np.frombuffer(raw, dtype="<f4").reshape(shape)
    return out
