"""Networks: observation encoders, actors and critics (see docs/algorithms.md)."""

from evo_rl.nets.actors import ActorModule, GaussianActor, SquashedGaussianActor, action_dim
from evo_rl.nets.critics import EnsembleQNetwork, QNetwork, ValueNetwork
from evo_rl.nets.encoder import NatureCNN, Obs, ObservationEncoder, as_batch, to_device

__all__ = [
    "ActorModule",
    "EnsembleQNetwork",
    "GaussianActor",
    "NatureCNN",
    "Obs",
    "ObservationEncoder",
    "QNetwork",
    "SquashedGaussianActor",
    "ValueNetwork",
    "action_dim",
    "as_batch",
    "to_device",
]
