"""Policy files: an actor's weights as safetensors, with what rebuilds it in the
file's metadata (no pickle).

Metadata keys (strings, as safetensors requires): ``format`` (``evo-rl-policy``),
``version``, ``algo``, ``flavour``, ``track``, ``env_steps``, ``config`` (the
resolved configuration as JSON: observation layout, sensors and network sizes),
``eval`` (the evaluation result the policy was saved with, JSON, or ``null``) and
``tensors_sha256`` (the weights' checksum, :func:`evo_rl.algos.state.tensor_digest`).
:func:`load_policy` checks it: a damaged file is refused with a message naming it; a
file without one (older EVO RL) loads with a warning.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import safe_open

from evo_rl.algos.state import DIGEST_KEY, load_tensors, save_tensors
from evo_rl.config import EvoConfig
from evo_rl.errors import CheckpointError

FORMAT = "evo-rl-policy"
VERSION = "1"
PRETRAINED = Path(__file__).resolve().parent.parent / "data" / "pretrained.safetensors"  # the evo-test specialist
GENERAL = PRETRAINED.with_name("general.safetensors")  # the driver for any track (generated tracks, randomised)
SHIPPED = {"pretrained": PRETRAINED, "general": GENERAL}  # the policies `evo-rl eval NAME` and `demo` know by name


@dataclass
class LoadedPolicy:
    """An actor read from a policy file, ready for ``actor.act(obs, test=True)``."""

    actor: Any  # evo_rl.nets.actors.ActorModule, on the CPU, no gradients
    cfg: EvoConfig  # the configuration it was trained with
    meta: dict[str, Any]


def save_policy(path: str | Path, actor: torch.nn.Module, cfg: EvoConfig, **meta: Any) -> Path:
    """Write ``actor``'s weights and metadata to ``path`` atomically."""
    path = Path(path)
    tensors = dict(actor.state_dict())
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "algo": cfg.algo.name,
        "flavour": cfg.env.flavour,
        "track": cfg.env.track or "",
        "config": cfg.model_dump_json(),
        **{k: json.dumps(v) for k, v in meta.items()},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_tensors(tmp, tensors, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def build_actor(cfg: EvoConfig, device: str = "cpu") -> torch.nn.Module:
    """A freshly initialised actor of the configured algorithm and observation layout (no critics
    or optimisers are built)."""
    from evo_rl.algos import make_actor
    from evo_rl.envs.spaces import action_space, observation_space

    return make_actor(cfg, observation_space(cfg), action_space(), device=device)


def read_policy_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"policy file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - any read failure means a bad file
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not an EVO RL policy (no format={FORMAT} metadata)")
    return meta


def load_policy(path: str | Path) -> LoadedPolicy:
    """Rebuild the actor stored in a policy file (CPU, evaluation mode), checking its checksum."""
    path = Path(path)
    meta = read_policy_metadata(path)
    tensors, _ = load_tensors(path, what="policy file")
    try:
        cfg = EvoConfig.model_validate_json(meta["config"])
    except (KeyError, ValidationError) as e:
        raise CheckpointError(f"policy file {path}: its stored configuration is invalid ({e})") from None
    actor = build_actor(cfg)
    try:
        actor.load_state_dict(tensors)
    except (RuntimeError, OSError) as e:
        raise CheckpointError(f"policy file {path} does not match the actor its config describes: {e}") from None
    actor.eval().requires_grad_(False)
    extra = {}
    for key, value in meta.items():
        if key in ("format", "version", "algo", "flavour", "track", "config", DIGEST_KEY):
            extra[key] = value
            continue
        try:
            extra[key] = json.loads(value)
        except ValueError:
            extra[key] = value
    return LoadedPolicy(actor, cfg, extra)
