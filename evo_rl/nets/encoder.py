"""Observation encoders built from a Gymnasium observation space.

An observation is either one flat ``Box`` or a ``Tuple`` of ``Box`` parts (TMRL's
layouts: speed, LIDAR history, previous actions, images...). Parts are routed by
shape:

- a part with 3 dimensions ``(history, height, width)`` is an image history: its
  pixels are divided by 255 and go through a small convolutional stack (the
  DQN "Nature" stack sized for 64x64 frames, the history as channels);
- every other part (1 or 2 dimensions) is flattened into the vector path.

Vector inputs get a fixed, parameter-free scaling read from the space's bounds:
a dimension with finite bounds is divided by ``max(|low|, |high|)`` (LIDAR metres
by the range, progress by 1, previous actions by 1, speed by its declared
maximum), and a dimension with an infinite bound goes through
``symlog(x) = sign(x) * log(1 + |x|)``, which keeps large values (km/h, metres)
in a range an MLP handles well without knowing their scale.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from evo_rl.errors import EvoError

Obs = torch.Tensor | tuple[torch.Tensor, ...]
"""A batch of observations: one tensor ``[B, D]`` or a tuple of tensors ``[B, ...]``."""

MIN_IMAGE_SIZE = 36
"""Smallest image side the convolutional stack accepts (8/4, 4/2, 3/1 kernels/strides)."""


def observation_parts(obs_space: spaces.Space) -> list[spaces.Box]:
    """The ``Box`` parts of an observation space (a flat ``Box`` is one part)."""
    if isinstance(obs_space, spaces.Box):
        return [obs_space]
    if isinstance(obs_space, spaces.Tuple) and all(isinstance(s, spaces.Box) for s in obs_space.spaces):
        return list(obs_space.spaces)
    raise EvoError(
        f"observation space {obs_space} is not supported by EVO RL's networks; "
        "use a gymnasium Box or a Tuple of Box parts"
    )


def is_image(part: spaces.Box) -> bool:
    """True for a 3-dimensional part ``(history, height, width)``."""
    return len(part.shape) == 3


def input_scaling(part: spaces.Box) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension ``(scale, unbounded)`` of a vector part, flattened.

    ``scale`` is ``1 / max(|low|, |high|)`` where both bounds are finite and not
    both zero, else 1; ``unbounded`` marks dimensions with an infinite bound
    (those get symlog instead).
    """
    low = np.asarray(part.low, dtype=np.float64).reshape(-1)  # [D]
    high = np.asarray(part.high, dtype=np.float64).reshape(-1)  # [D]
    unbounded = ~(np.isfinite(low) & np.isfinite(high))  # [D]
    bound = np.maximum(np.abs(np.where(unbounded, 0.0, low)), np.abs(np.where(unbounded, 0.0, high)))  # [D]
    scale = np.where(bound > 0, 1.0 / np.where(bound > 0, bound, 1.0), 1.0)  # [D]
    return scale.astype(np.float32), unbounded


class NatureCNN(nn.Module):
    """Conv stack of Mnih et al. 2015 (32x8/4, 64x4/2, 64x3/1) then a linear layer.

    Input ``[B, history, H, W]`` uint8 (or float in [0, 255]); output ``[B, features]``.
    """

    def __init__(self, in_channels: int, height: int, width: int, features: int = 256) -> None:
        super().__init__()
        if min(height, width) < MIN_IMAGE_SIZE:
            raise EvoError(
                f"image observations of {height}x{width} pixels are too small for the CNN encoder; "
                f"set camera.width and camera.height to at least {MIN_IMAGE_SIZE} (64 is the default)"
            )
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, in_channels, height, width)).shape[1]  # 1024 for 64x64
        self.head = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.out_dim = features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(images.float() / 255.0))


class ObservationEncoder(nn.Module):
    """Turns a batch of observations into one feature vector ``[B, out_dim]``.

    Vector parts are flattened, scaled (see the module docstring) and
    concatenated; each image part has its own :class:`NatureCNN`. Without image
    parts the encoder has no parameters.
    """

    def __init__(self, obs_space: spaces.Space, cnn_features: int = 256) -> None:
        super().__init__()
        parts = observation_parts(obs_space)
        self.flat = isinstance(obs_space, spaces.Box)
        self.vector_idx = [i for i, p in enumerate(parts) if not is_image(p)]
        self.image_idx = [i for i, p in enumerate(parts) if is_image(p)]
        for i, p in enumerate(parts):
            if len(p.shape) > 3 or (self.flat and is_image(p)):
                raise EvoError(
                    f"observation part {i} has shape {p.shape}; EVO RL's encoder takes vectors (1-2 dims) "
                    "and grayscale image histories (history, height, width)"
                )
        if self.vector_idx:
            scales, unbounded = zip(*(input_scaling(parts[i]) for i in self.vector_idx), strict=True)
            self.register_buffer("scale", torch.from_numpy(np.concatenate(scales)))  # [D]
            self.register_buffer("unbounded", torch.from_numpy(np.concatenate(unbounded)))  # [D]
            self.any_unbounded = bool(self.unbounded.any())
        self.vector_dim = int(sum(math.prod(parts[i].shape) for i in self.vector_idx))
        self.cnns = nn.ModuleList(NatureCNN(*parts[i].shape, features=cnn_features) for i in self.image_idx)
        self.out_dim = self.vector_dim + sum(c.out_dim for c in self.cnns)
        self.part_ndims = [len(p.shape) for p in parts]

    def forward(self, obs: Obs) -> torch.Tensor:
        parts = (obs,) if self.flat else obs
        features = []
        if self.vector_idx:
            batch = parts[self.vector_idx[0]].shape[0]
            x = torch.cat([parts[i].reshape(batch, -1).float() for i in self.vector_idx], dim=1)  # [B, D]
            if self.any_unbounded:
                x = torch.where(self.unbounded, torch.sign(x) * torch.log1p(x.abs()), x * self.scale)
            else:
                x = x * self.scale
            features.append(x)
        features.extend(cnn(parts[i]) for cnn, i in zip(self.cnns, self.image_idx, strict=True))
        return features[0] if len(features) == 1 else torch.cat(features, dim=1)


def to_device(obs: Obs, device: torch.device) -> Obs:
    """Move a batch of observations to ``device`` (no copy when already there)."""
    if isinstance(obs, torch.Tensor):
        return obs.to(device, non_blocking=True)
    return tuple(o.to(device, non_blocking=True) for o in obs)


def as_batch(obs, part_ndims: list[int], flat: bool, device: torch.device) -> tuple[Obs, bool]:
    """Convert NumPy (or torch) observations to a tensor batch on ``device``.

    Accepts one observation or a batch ``[N, ...]``; returns the batch and
    whether a batch axis was added (a single observation).
    """
    parts = (obs,) if flat else tuple(obs)
    if len(parts) != len(part_ndims):
        raise EvoError(f"observation has {len(parts)} parts, the network expects {len(part_ndims)}")
    tensors = [torch.as_tensor(np.asarray(p) if not isinstance(p, torch.Tensor) else p) for p in parts]
    single = tensors[0].dim() == part_ndims[0]
    if single:
        tensors = [t.unsqueeze(0) for t in tensors]
    tensors = [t.to(device) for t in tensors]
    return (tensors[0] if flat else tuple(tensors)), single
