"""Optional techniques for the off-policy agents, each off by default.

- :func:`random_shift`: DrQ's image augmentation (Kostrikov, Yarats and Fergus, "Image Augmentation Is
  All You Need", 2020): every image of a batch is padded by ``pad`` pixels (edges repeated) and cropped
  back at a random offset, independently for the observation and the next observation
  (``algo.sac.drq_pad``).
- :class:`RND`: Random Network Distillation (Burda et al., "Exploration by Random Network Distillation",
  2018): a fixed random network and a predictor trained to match it; the prediction error on the next
  observation, divided by its running standard deviation, is an intrinsic reward added to the batch's
  reward with weight ``algo.sac.rnd_weight``, so novel states are worth visiting.
- :class:`ParamNoiseActor`: parameter-space noise (Plappert et al., "Parameter Space Noise for
  Exploration", 2018): the collector acts with a copy of the actor whose weights carry Gaussian noise,
  drawn again every ``interval`` steps; its scale adapts so that the perturbed actions differ from the
  unperturbed ones by ``target`` (root mean square, in action units) (``train.param_noise``).
- :class:`DynamicsModel`: Dyna (Sutton, "Integrated Architectures for Learning, Planning, and Reacting
  Based on Approximating Dynamic Programming", 1990), in the one-step form of MBPO (Janner et al., "When
  to Trust Your Model", 2019): a network learns one step of the world, ``(s, a) -> (s', r, terminated)``,
  from every real batch; once trained, a fraction ``algo.sac.model_ratio`` of every batch is replaced by
  imagined transitions that start from the batch's real states with the current policy's actions, so
  they go through the same critic and actor updates as the real ones (vector observations only).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from evo_rl.errors import ConfigError
from evo_rl.nets.encoder import Obs, ObservationEncoder, is_image, observation_parts
from evo_rl.nets.layers import adam, mlp

ADAPT = 1.05  # factor of each adaptation of the parameter-noise scale (Plappert et al.: 1.01 per step)


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``images [B, C, H, W]`` each shifted by up to ``pad`` pixels in x and y (edge pixels repeated)."""
    b, c, h, w = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate")  # [B, C, H+2p, W+2p]
    dev = images.device
    dx = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # [B, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # [B, 1, 1, W]
    batch = torch.arange(b, device=dev)[:, None, None, None]
    chan = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chan, rows, cols].to(images.dtype)


def augment(obs: Obs, image_idx: list[int], pad: int) -> Obs:
    """``obs`` with every image part randomly shifted (:func:`random_shift`); vector parts unchanged."""
    if not image_idx or pad <= 0 or not isinstance(obs, (tuple, list)):
        return obs
    parts = list(obs)
    for i in image_idx:
        parts[i] = random_shift(parts[i], pad)
    return tuple(parts)


def image_parts(obs_space: spaces.Space) -> list[int]:
    """Indices of the image parts of a Tuple observation space."""
    if not isinstance(obs_space, spaces.Tuple):
        return []
    return [i for i, p in enumerate(observation_parts(obs_space)) if is_image(p)]


class RND(nn.Module):
    """A random target network, its predictor and the running scale of the prediction error."""

    err_var: torch.Tensor
    count: torch.Tensor

    def __init__(self, obs_space: spaces.Space, features: int = 64, hidden: int = 256, lr: float = 1e-4) -> None:
        super().__init__()
        self.target_encoder = ObservationEncoder(obs_space)
        self.target = mlp(self.target_encoder.out_dim, [hidden], features, "relu")
        self.encoder = ObservationEncoder(obs_space)
        self.predictor = mlp(self.encoder.out_dim, [hidden, hidden], features, "relu")
        for p in [*self.target_encoder.parameters(), *self.target.parameters()]:
            p.requires_grad_(False)
        self.register_buffer("err_var", torch.ones(()))  # running variance of the prediction error
        self.register_buffer("count", torch.zeros(()))
        self.optim = adam([*self.encoder.parameters(), *self.predictor.parameters()], lr)

    def error(self, obs: Obs) -> torch.Tensor:
        """Prediction error ``[B]`` (mean squared over the features)."""
        with torch.no_grad():
            target = self.target(self.target_encoder(obs))
        return (self.predictor(self.encoder(obs)) - target).pow(2).mean(-1)

    def intrinsic(self, obs: Obs) -> torch.Tensor:
        """Train the predictor one step on ``obs`` and return its error before the step, scaled by the
        running standard deviation, ``[B]`` (no gradient)."""
        err = self.error(obs)
        loss = err.mean()
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        e = err.detach()
        with torch.no_grad():  # running variance of the error (exponential, as the reward scale it sets)
            self.count += 1
            rate = max(1.0 / float(self.count), 0.01)
            self.err_var.mul_(1.0 - rate).add_(rate * e.pow(2).mean())
        return e / self.err_var.sqrt().clamp_min(1e-8)


class ParamNoiseActor:
    """Acts for a collector with a perturbed copy of ``actor`` (see the module docstring)."""

    def __init__(self, actor: Any, target: float, interval: int = 100, seed: int = 0) -> None:
        self.actor = actor
        self.target = float(target)
        self.interval = int(interval)
        self.sigma = 0.05  # standard deviation of the weight noise
        self.distance = 0.0  # last measured RMS action distance
        self._gen = torch.Generator().manual_seed(seed)
        self._steps = 0
        self._noisy: Any = None  # the perturbed copy of the actor

    def _perturb(self) -> None:
        noisy = copy.deepcopy(self.actor)
        with torch.no_grad():
            for p in noisy.parameters():
                noise = torch.randn(p.shape, generator=self._gen).to(p.device, p.dtype)
                p.add_(self.sigma * noise)
        self._noisy = noisy

    def act(self, obs: Any, test: bool = False) -> np.ndarray:
        """The perturbed actor's actions; every ``interval`` calls the noise is drawn again and its
        scale adapted to the distance between perturbed and unperturbed deterministic actions."""
        if self._noisy is None or self._steps % self.interval == 0:
            if self._noisy is not None:
                self._adapt(obs)
            self._perturb()
        self._steps += 1
        assert self._noisy is not None
        return self._noisy.act(obs, test=test)

    def set_actor(self, actor: Any) -> None:
        """New weights (the learner's): the next step draws a fresh perturbation of them."""
        self.actor = actor
        self._noisy = None

    def _adapt(self, obs: Any) -> None:
        assert self._noisy is not None
        clean = np.asarray(self.actor.act(obs, test=True))
        noisy = np.asarray(self._noisy.act(obs, test=True))
        self.distance = float(np.sqrt(np.mean((clean - noisy) ** 2)))
        self.sigma *= ADAPT if self.distance < self.target else 1.0 / ADAPT


class DynamicsModel(nn.Module):
    """One learned step of the world for vector observations (see the module docstring).

    The network sees the scaled observation (the agents' own encoder) and the action, and predicts the
    change of every observation number divided by its running standard deviation, the reward and the
    termination logit. Imagined observations are clipped to the observation space's bounds.
    """

    delta_std: torch.Tensor
    count: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, obs_space: spaces.Space, act_dim: int, hidden: int = 256, lr: float = 3e-4) -> None:
        super().__init__()
        parts = observation_parts(obs_space)
        if any(is_image(p) for p in parts):
            raise ConfigError(
                "algo.sac.model_ratio learns a model of vector observations, and these have images: "
                "set env.flavour: lidar or lidar_progress, or algo.sac.model_ratio: 0"
            )
        self.flat = isinstance(obs_space, spaces.Box)
        self.shapes = [p.shape for p in parts]
        self.sizes = [int(np.prod(shape)) for shape in self.shapes]
        dim = sum(self.sizes)
        low = np.concatenate([np.asarray(p.low, np.float32).reshape(-1) for p in parts])
        high = np.concatenate([np.asarray(p.high, np.float32).reshape(-1) for p in parts])
        self.register_buffer("low", torch.from_numpy(np.where(np.isfinite(low), low, -np.inf).astype(np.float32)))
        self.register_buffer("high", torch.from_numpy(np.where(np.isfinite(high), high, np.inf).astype(np.float32)))
        self.encoder = ObservationEncoder(obs_space)
        self.net = mlp(self.encoder.out_dim + act_dim, [hidden, hidden], dim + 2, "relu")
        self.register_buffer("delta_std", torch.ones(dim))  # running standard deviation of s' - s, [D]
        self.register_buffer("count", torch.zeros(()))  # learning steps so far
        self.optim = adam(self.net.parameters(), lr)

    def _flat(self, obs: Obs) -> torch.Tensor:
        parts: tuple[torch.Tensor, ...] = (obs,) if isinstance(obs, torch.Tensor) else tuple(obs)
        return torch.cat([p.reshape(p.shape[0], -1).float() for p in parts], dim=1)  # [B, D]

    def _parts(self, x: torch.Tensor) -> Obs:
        chunks = x.split(self.sizes, dim=1)
        parts = tuple(c.reshape(x.shape[0], *shape) for c, shape in zip(chunks, self.shapes, strict=True))
        return parts[0] if self.flat else parts

    def forward(self, obs: Obs, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(scaled change [B, D], reward [B], termination logit [B])``."""
        out = self.net(torch.cat([self.encoder(obs), action.float()], dim=1))
        return out[:, :-2], out[:, -2], out[:, -1]

    def learn(
        self, obs: Obs, action: torch.Tensor, reward: torch.Tensor, next_obs: Obs, terminated: torch.Tensor
    ) -> torch.Tensor:
        """One gradient step on real one-step transitions; returns the loss (squared errors of the scaled
        change and of the reward, plus the termination's cross-entropy)."""
        delta = self._flat(next_obs) - self._flat(obs)  # [B, D]
        with torch.no_grad():  # running scale of the change (exponential once past the first batches)
            self.count += 1
            rate = max(1.0 / float(self.count), 0.01)
            var = self.delta_std.pow(2).mul_(1.0 - rate).add_(rate * delta.pow(2).mean(0))
            self.delta_std.copy_(var.sqrt().clamp_min(1e-3))
        pred_delta, pred_reward, logit = self(obs, action)
        loss = (
            (pred_delta - delta / self.delta_std).pow(2).mean()
            + (pred_reward - reward).pow(2).mean()
            + F.binary_cross_entropy_with_logits(logit, terminated.float())
        )
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return loss.detach()

    @torch.no_grad()
    def imagine(self, obs: Obs, action: torch.Tensor) -> tuple[Obs, torch.Tensor, torch.Tensor]:
        """The model's ``(next observation, reward [B], terminated [B] as 0/1)`` of ``action`` in ``obs``."""
        pred_delta, reward, logit = self(obs, action)
        x = self._flat(obs) + pred_delta * self.delta_std
        x = torch.maximum(torch.minimum(x, self.high), self.low)
        return self._parts(x), reward, (logit > 0).float()
