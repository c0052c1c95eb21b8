"""What every reward term sees and returns, the term base class and the registry.

A term is called once per environment step for all N cars at once. It reads a
:class:`StepContext` and returns its values, ``[N]``; a term may also end
episodes by returning ``(values, terminate)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from evo_rl.config import Section

if TYPE_CHECKING:
    from evo_rl.rewards.multitrack import TrackGroup
    from evo_rl.rewards.reference_trajectory import ReferenceTrajectory
    from evo_rl.sim.track import Track


class StepContext(NamedTuple):
    """The state a reward term reads after one step of N cars."""

    world: Any  # the car source (evo_rl.envs.source.CarSource), state after the step
    prev_progress_s: np.ndarray  # [N] progress along the track before the step, m
    prev_pos3: np.ndarray  # [N, 3] game position (x, y, z) before the step
    action: np.ndarray  # [N, 3] float32 action as applied (clipped)
    prev_action: np.ndarray  # [N, 3] previous step's action (zeros at an episode start)
    steps: np.ndarray  # [N] int, steps of the episode including this one
    dt: float  # control step, s


class RewardOutput(NamedTuple):
    """What :class:`~evo_rl.rewards.RewardManager` returns for one step."""

    reward: np.ndarray  # [N] float32, weighted sum of the terms
    terms: dict[str, np.ndarray]  # label -> [N] float32 weighted contribution; they sum to `reward`
    terminate: np.ndarray  # [N] bool, episodes ended by a reward rule
    reason: np.ndarray  # [N] object (str), why each episode ended; "" when it goes on


class RewardTerm:
    """Base class of the built-in terms (custom terms may use it too).

    A subclass sets ``name``, documents itself in its docstring (first line shown by
    ``evo-rl reward terms``), declares its parameters as the pydantic model
    ``Params`` and the car-source fields it reads in ``needs`` (names of
    :data:`evo_rl.envs.source.FIELDS`: a source that lacks one is refused at start-up). It is built as
    ``Term(n_envs, track, reference, **params)``; when the cars drive several tracks (``env.tracks``),
    ``track`` is a :class:`~evo_rl.rewards.multitrack.TrackGroup` and ``reference`` a
    :class:`~evo_rl.rewards.multitrack.ReferenceSet` (see that module).
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    end_reason: ClassVar[str] = ""  # reason reported when the term ends episodes

    class Params(Section):
        pass

    def __init__(
        self, n_envs: int, track: Track | TrackGroup | None, reference: ReferenceTrajectory, **params: Any
    ) -> None:
        self.n_envs = n_envs
        self.track = track
        self.reference = reference
        self.params: Any = self.Params(**params)  # the subclass's own Params

    def reset(self, mask: np.ndarray) -> None:
        """Clear the per-episode state of the masked cars (stateless terms: nothing)."""

    def __call__(self, ctx: StepContext) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def finalize(self, values: np.ndarray, terminal: np.ndarray) -> None:
        """Adjust ``values`` in place once the manager knows which episodes terminate."""


TERMS: dict[str, type[RewardTerm]] = {}


def register(cls: type[RewardTerm]) -> type[RewardTerm]:
    """Class decorator adding a built-in term to :data:`TERMS` under ``cls.name``."""
    TERMS[cls.name] = cls
    return cls
