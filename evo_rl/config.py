"""One YAML file configures EVO RL; these pydantic models validate it.

Every field has a one-line description (shown by ``evo-rl config show --fields``),
unknown keys are errors and floats must be finite. ``load_config(path, overrides)``
reads a file (:func:`read_config_file`: a repeated key is an error), applies
``section.key=value`` overrides (:func:`apply_overrides`, the one place overrides are
applied) and validates the result (:func:`validate_config`); mistakes raise
:class:`~evo_rl.errors.ConfigError` naming the field path, the bad value and what is
allowed (:func:`format_validation_errors`). What needs more than the config itself
(the track exists, the device is present, the memory fits) is checked at start-up by
:mod:`evo_rl.train.preflight`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from evo_rl.errors import ConfigError


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are checked.

    Floats must be finite (``.inf`` and ``.nan`` are refused, naming the field); a
    field that means "no limit" takes ``null`` instead.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- simulator


class SimConfig(Section):
    dt: float = Field(0.05, gt=0, le=1.0, description="control step in seconds (TrackMania: 0.05 = 20 Hz)")
    substeps: int = Field(5, ge=1, le=100, description="physics sub-steps per control step")
    threads: int = Field(0, ge=0, description="numba threads for the simulator kernels; 0 = all cores")


class CarConfig(Section):
    mass: float = Field(1200.0, gt=0, description="car mass, kg")
    wheelbase: float = Field(2.6, gt=0, description="distance between axles, m")
    half_width: float = Field(
        1.0, gt=0, description="half the car's width, m; the car's centre keeps this far from walls"
    )
    engine_force: float = Field(20000.0, gt=0, description="engine force at the wheels in first gear, N")
    gear_ratios: list[float] = Field(
        [1.0, 0.72, 0.56, 0.45, 0.38], min_length=1, description="force multiplier of each gear, first to top"
    )
    shift_up_rpm: float = Field(10000.0, gt=0, description="engine speed that shifts up a gear")
    shift_down_rpm: float = Field(5500.0, gt=0, description="engine speed that shifts down a gear")
    idle_rpm: float = Field(1500.0, ge=0, description="engine speed at rest")
    max_rpm: float = Field(11000.0, gt=0, description="engine speed limit; no engine force above it")
    top_speed: float = Field(95.0, gt=0, description="speed in top gear at max_rpm, m/s (sets the gearing)")
    drag: float = Field(0.85, ge=0, description="aerodynamic drag coefficient k in F = k * v^2, N s^2/m^2")
    rolling_resistance: float = Field(150.0, ge=0, description="constant rolling resistance, N")
    brake_force: float = Field(24000.0, gt=0, description="brake force at full pedal, N")
    reverse_force: float = Field(8000.0, ge=0, description="backward drive force when braking below 1 m/s, N")
    reverse_speed: float = Field(15.0, ge=0, description="top speed in reverse, m/s")
    grip: float = Field(1.6, gt=0, description="tyre friction coefficient (lateral and longitudinal limit, in g)")
    downforce: float = Field(0.25, ge=0, description="extra grip per m/s of speed, as a fraction of g per 100 m/s")
    slide_grip: float = Field(0.8, gt=0, le=1, description="fraction of grip left while the tyres slide (drift)")
    slide_speed: float = Field(1.0, gt=0, description="sideways tyre speed above which the tyres slide, m/s")
    max_steer_deg: float = Field(28.0, gt=0, lt=90, description="front wheel angle at full steering, degrees")
    steer_rate: float = Field(5.0, gt=0, description="steering travel per second, in full-lock units")
    yaw_overshoot: float = Field(
        1.3, gt=0, description="turn rate at full steering over the rate grip allows; above 1 full lock slides"
    )
    slip_align: float = Field(2.0, ge=0, description="self-aligning turn rate per unit of sideways slip (v_lat/v), 1/s")
    wall_friction: float = Field(
        0.3, ge=0, le=1, description="wall friction coefficient: speed along the wall lost per unit of impact impulse"
    )
    wall_restitution: float = Field(0.1, ge=0, le=1, description="fraction of speed into the wall bounced back")


class LidarConfig(Section):
    layout: Literal["fan", "tires"] = Field(
        "fan", description="fan: beams evenly over fov_deg, left to right; tires: 11 front + 4 left + 4 right"
    )
    beams: int = Field(19, ge=1, le=256, description="number of beams for the fan layout (tires: always 19)")
    fov_deg: float = Field(180.0, gt=0, le=360, description="field of view of the fan layout, degrees")
    range: float = Field(100.0, gt=0, description="maximum distance a beam reports, m")
    kind: Literal["geometric", "tmrl"] = Field(
        "geometric",
        description="geometric: beams against the track model, m; tmrl: TMRL's TM20LIDAR, 19 beams over the "
        "cockpit picture, px (the simulator draws it; a game captures its window)",
    )


class CameraConfig(Section):
    width: int = Field(64, ge=8, le=512, description="image width, pixels")
    height: int = Field(64, ge=8, le=512, description="image height, pixels")
    fov_deg: float = Field(90.0, gt=10, lt=170, description="horizontal field of view, degrees")
    eye_height: float = Field(1.4, gt=0, description="camera height above the road, m")
    wall_height: float = Field(2.0, gt=0, description="wall height, m")
    range: float = Field(150.0, gt=0, description="drawing distance, m")
    horizon: float = Field(0.4, ge=0, le=1, description="row of the horizon, as a fraction of the height from the top")


# --------------------------------------------------------------------------- environment


class GeneratedTracks(Section):
    seeds: tuple[int, int] = Field(description="generator seeds [first, end): end - first random block tracks")
    n_blocks: int = Field(16, ge=1, le=64, description="blocks between the start and the finish (the length)")
    min_radius: float = Field(
        16.0, ge=0, description="tightest centre-line radius, m: 16 allows 1-block curves and hairpins, 48 wide curves"
    )
    width: float = Field(20.0, gt=0, le=24, description="road width, m")
    checkpoints: int = Field(4, ge=0, description="checkpoints per track (at most n_blocks)")

    @model_validator(mode="after")
    def _seed_range(self) -> GeneratedTracks:
        first, end = self.seeds
        if end <= first:
            raise ValueError(f"seeds [{first}, {end}] is empty: give [first, end) with end > first, e.g. [0, 64]")
        if self.checkpoints > self.n_blocks:
            raise ValueError(f"checkpoints ({self.checkpoints}) must be at most n_blocks ({self.n_blocks})")
        return self


class CurriculumConfig(Section):
    enabled: bool = Field(
        False, description="generated tracks (env.tracks) start easy and get harder as the finish rate grows"
    )
    levels: int = Field(
        4, ge=2, le=16, description="difficulty steps from easy (short, wide curves) to the generated sets' own knobs"
    )
    promote_at: float = Field(
        0.8, gt=0, le=1, description="finish rate over the last `window` episodes that moves to the next level"
    )
    window: int = Field(64, ge=1, description="episodes the finish rate of a level is measured over")


class RandomiseConfig(Section):
    grip: tuple[float, float] | None = Field(
        None, description="range of car.grip multipliers drawn per car and episode, e.g. [0.85, 1.15]; null: off"
    )
    engine: tuple[float, float] | None = Field(None, description="range of car.engine_force multipliers; null: off")
    mass: tuple[float, float] | None = Field(None, description="range of car.mass multipliers; null: off")
    drag: tuple[float, float] | None = Field(None, description="range of car.drag multipliers; null: off")
    steer_rate: tuple[float, float] | None = Field(None, description="range of car.steer_rate multipliers; null: off")
    road_width: tuple[float, float] | None = Field(
        None, description="range of road widths, m, of generated env.tracks (one draw per seed); null: their width"
    )
    lidar_noise: float = Field(
        0.0, ge=0, description="standard deviation of Gaussian noise on each LIDAR beam (m, or px for lidar.kind tmrl)"
    )
    speed_noise: float = Field(0.0, ge=0, description="standard deviation of Gaussian noise on the speed, km/h")
    latency: tuple[int, int] = Field(
        (0, 0), description="range [low, high] of action latency in control steps, drawn per car and episode"
    )
    drop_obs: float = Field(
        0.0, ge=0, lt=1, description="chance that a car's sensors miss a step (the previous reading repeats)"
    )

    @model_validator(mode="after")
    def _ranges(self) -> RandomiseConfig:
        for name in ("grip", "engine", "mass", "drag", "steer_rate", "road_width"):
            r = getattr(self, name)
            if r is not None and not 0 < r[0] <= r[1]:
                raise ValueError(f"{name} = {list(r)}: give [low, high] with 0 < low <= high")
        if not 0 <= self.latency[0] <= self.latency[1] <= 8:
            raise ValueError(f"latency = {list(self.latency)}: give [low, high] steps with 0 <= low <= high <= 8")
        return self

    @property
    def physics(self) -> bool:
        """Whether any car parameter is randomised."""
        return any(getattr(self, n) is not None for n in ("grip", "engine", "mass", "drag", "steer_rate"))


class EnvConfig(Section):
    source: Literal["sim", "tm2020", "tmnf"] = Field(
        "sim",
        description="car source: sim (the built-in simulator), tm2020 (TrackMania 2020) or tmnf (TrackMania Nations "
        "Forever through TMInterface); game settings in the game section",
    )
    track: str | None = Field(
        "evo-test",
        description="built-in track name or path to a .track file; for a game, the map's track model "
        "(`evo-rl game tm2020 record-track`), or null for none",
    )
    tracks: list[str | GeneratedTracks] | None = Field(
        None,
        description="simulator: train on many tracks, each car drawing one per episode: built-in names, .track files "
        "and generated sets {seeds: [first, end], n_blocks, min_radius, width, checkpoints}; env.track is then the "
        "evaluation track; null: env.track only",
    )
    curriculum: CurriculumConfig = Field(
        default_factory=CurriculumConfig, description="difficulty of the generated tracks of env.tracks"
    )
    flavour: Literal["lidar", "lidar_progress", "full"] = Field(
        "lidar", description="observation layout: TMRL's TM20LIDAR, TM20LIDARPROGRESS or TM20FULL"
    )
    n_envs: int = Field(16, ge=1, le=65536, description="cars stepped together by the vector environment")
    hist_len: int = Field(4, ge=1, le=16, description="frames of LIDAR or image history in each observation")
    lookahead_points: int = Field(
        0,
        ge=0,
        le=64,
        description="course preview: the track's heading (relative to the car) and curvature at this many points "
        "ahead, from the track model, as one more observation part before the actions; 0: off (TMRL's layouts)",
    )
    lookahead_distance: float = Field(
        200.0, gt=0, description="distance along the track covered by the look-ahead points, m (evenly spaced)"
    )
    act_buf_len: int = Field(2, ge=0, le=16, description="previous actions in each observation")
    flat: bool = Field(False, description="one flat float32 Box observation instead of TMRL's tuple")
    controls: Literal["binary", "analog"] = Field(
        "binary", description="binary: gas/brake pressed when > 0 (keyboard); analog: clip(a, 0, 1) (gamepad)"
    )
    max_steps: int | None = Field(
        None,
        ge=1,
        description="step limit of an episode (truncation); unset: 2.5 reference laps of the track, at least 120 s",
    )
    seed: int = Field(0, description="seed of the environment's random start perturbations")
    start_lateral: float = Field(
        0.5, ge=0, description="largest random sideways offset of a car at an episode start, m"
    )
    start_yaw_deg: float = Field(
        2.0, ge=0, le=45, description="largest random heading offset at an episode start, degrees"
    )


class GameConfig(Section):
    protocol: Literal["evo", "tmrl"] = Field(
        "evo", description="evo: the EVO RL OpenPlanet plugin; tmrl: TMRL's signed TMRL_GrabData plugin"
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="telemetry port on 127.0.0.1; null: 9100 (evo) or 9000 (tmrl)"
    )
    input: Literal["gamepad", "keyboard", "virtual"] = Field(
        "gamepad", description="gamepad (vgamepad), keyboard, or virtual (a virtual game's input port)"
    )
    input_port: int | None = Field(
        None, ge=1, le=65535, description="virtual input and screen port; null: the telemetry port + 1"
    )
    screen: Literal["none", "window", "virtual"] = Field(
        "none",
        description="none, window (mss capture of the game window; TMNF: of each instance's window placed by "
        "`evo-rl game tmnf launch --tile W H`) or virtual (a virtual game's screen); needed by lidar.kind: "
        "tmrl and env.flavour: full (TMNF: virtual instances send frames themselves)",
    )
    window_width: int = Field(958, ge=64, description="game window client width, px (TMRL's LIDAR: 958)")
    window_height: int = Field(488, ge=64, description="game window client height, px (TMRL's LIDAR: 488)")
    obs_capture: float = Field(
        0.04, gt=0, description="observation captured this long after a control step starts, s (TMRL: 0.04)"
    )
    timeout_factor: float = Field(
        1.0, gt=0, description="rtgym: a step later than this many control steps counts as timed out"
    )
    record_timeout: float = Field(2.0, gt=0, description="seconds without a telemetry record before a step fails")
    reconnect_timeout: float = Field(
        60.0, gt=0, description="seconds an episode start waits for a game that stopped answering to come back"
    )
    ports: list[int] = Field(
        default_factory=lambda: [9200], description="TMNF: the instances' ports on 127.0.0.1, one car each"
    )
    speed: float = Field(1.0, ge=1, le=100, description="TMNF: game speed (lock-step, so no game time is lost)")
    map: str | None = Field(
        None,
        description="TMNF: map every instance loads at the start (a file in the game's Tracks folder, as "
        "TMInterface's `map` command takes; the virtual TMNF: a track name); null: the map already loaded",
    )
    launcher_dir: str | None = Field(
        None, description="TMNF: folder where clients report hung instances to `game tmnf launch`; null: a temp folder"
    )
    time_scale: float = Field(
        1.0, ge=0.01, le=100, description="virtual games only: game seconds per real second (tests: 5)"
    )


class RewardTermConfig(Section):
    term: str = Field(description="term name (see `evo-rl reward terms`) or import path module:callable")
    name: str | None = Field(None, description="label in info['reward_terms'] and the logs; null: the term name")
    weight: float = Field(1.0, description="weight of the term in the step reward")
    params: dict[str, Any] = Field(default_factory=dict, description="the term's own parameters")


def _default_reward() -> list[RewardTermConfig]:
    return [RewardTermConfig(term="progress_distance", weight=0.1)]


class EpisodeConfig(Section):
    no_progress_seconds: float | None = Field(
        40.0, gt=0, description="end an episode after this long without progress along the track, s (null: never)"
    )
    stuck_seconds: float | None = Field(
        None,
        gt=0,
        description="end an episode if the car moved less than stuck_distance over this window, s (null: off)",
    )
    stuck_distance: float = Field(2.0, ge=0, description="distance, m, that counts as moving for the stuck rule")
    max_stray: float | None = Field(
        None, gt=0, description="end an episode farther than this from the reference line, m (null: never)"
    )
    reference: str | None = Field(
        None, description="reference trajectory of the reward terms: null/centre, racing_line, or a .npy/.csv file"
    )


# --------------------------------------------------------------------------- learning


class SACConfig(Section):
    gamma: float = Field(0.99, gt=0, le=1, description="discount factor")
    lr_actor: float = Field(3e-4, gt=0, description="actor learning rate")
    lr_critic: float = Field(3e-4, gt=0, description="critic learning rate")
    lr_entropy: float = Field(3e-4, gt=0, description="entropy coefficient learning rate (learned mode)")
    tau: float = Field(0.005, gt=0, le=1, description="target network Polyak averaging factor")
    alpha: float = Field(0.2, ge=0, description="entropy coefficient (initial value when learned)")
    learn_entropy: bool = Field(True, description="learn the entropy coefficient towards target_entropy")
    target_entropy: float | None = Field(None, description="target entropy; null = -2 * action_dim (-6)")
    hidden: list[PositiveInt] = Field([256, 256], min_length=1, description="hidden layer sizes of actor and critics")
    critic_layer_norm: bool = Field(False, description="LayerNorm on the critics' hidden layers (before each ReLU)")
    policy_average: float = Field(
        0.0003,
        ge=0,
        lt=1,
        description="Polyak rate of an averaged copy of the actor that evaluations and policy files use "
        "(the cars still act with the trained actor); 0: off",
    )
    drq_pad: int = Field(
        0, ge=0, le=16, description="DrQ: shift image observations by up to this many pixels in every batch; 0: off"
    )
    rnd_weight: float = Field(
        0.0, ge=0, description="RND: weight of the intrinsic reward (novelty of the next observation); 0: off"
    )
    rnd_lr: float = Field(1e-4, gt=0, description="RND: learning rate of the predictor network")
    model_ratio: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Dyna: fraction of every batch replaced by transitions imagined by a learned model; 0: off",
    )
    model_warmup: int = Field(
        2000, ge=0, description="Dyna: model learning steps (one per update) before imagined transitions are used"
    )
    model_lr: float = Field(3e-4, gt=0, description="Dyna: learning rate of the dynamics model")

    @model_validator(mode="after")
    def _alpha_positive_when_learned(self) -> SACConfig:
        if self.learn_entropy and self.alpha <= 0:
            raise ValueError("learn_entropy=true needs a positive initial alpha (it is learned as log(alpha))")
        return self


class REDQConfig(SACConfig):
    n_critics: int = Field(10, ge=2, description="critics in the ensemble (N)")
    m_target: int = Field(2, ge=1, description="critics sampled for the target (M)")
    q_updates_per_policy_update: int = Field(
        20, ge=1, description="critic updates per policy update (G; TMRL's REDQ_Q_UPDATES_PER_POLICY_UPDATE)"
    )

    @model_validator(mode="after")
    def _subset_fits(self) -> REDQConfig:
        if self.m_target > self.n_critics:
            raise ValueError(f"m_target ({self.m_target}) must not exceed n_critics ({self.n_critics})")
        return self


class PPOConfig(Section):
    gamma: float = Field(0.99, gt=0, le=1, description="discount factor")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    clip: float = Field(0.2, gt=0, description="clipping range of the policy ratio")
    entropy_coef: float = Field(0.01, ge=0, description="entropy bonus weight")
    value_coef: float = Field(0.5, ge=0, description="value loss weight")
    lr: float = Field(3e-4, gt=0, description="learning rate (of the policy, and of the value net unless lr_value)")
    lr_value: float | None = Field(None, gt=0, description="value network learning rate; null = lr")
    n_steps: int = Field(2048, ge=1, description="environment steps per rollout (over all envs)")
    batch_size: int = Field(64, ge=1, description="minibatch size")
    epochs: int = Field(10, ge=1, description="optimisation epochs per rollout")
    max_grad_norm: float = Field(0.5, gt=0, description="gradient clipping norm")
    clip_value: float | None = Field(None, gt=0, description="clipping range of the value update; null = no clipping")
    normalize_advantage: bool = Field(True, description="normalise advantages within each minibatch")
    log_std_init: float = Field(0.0, description="initial log standard deviation of the Gaussian policy")
    activation: Literal["tanh", "relu"] = Field("tanh", description="hidden activation of policy and value nets")
    hidden: list[PositiveInt] = Field([256, 256], min_length=1, description="hidden layer sizes")


ALGO_PRESETS: dict[str, dict[str, Any]] = {
    # TMRL's documented SAC values (POLYAK 0.995 = tau 0.005, fixed ALPHA)
    "tmrl-sac": {
        "name": "sac",
        "sac": {
            "gamma": 0.995,
            "tau": 0.005,
            "lr_actor": 1e-5,
            "lr_critic": 5e-5,
            "lr_entropy": 3e-4,
            "alpha": 0.01,
            "learn_entropy": False,
            "hidden": [256, 256],
        },
    },
    # TMRL README's REDQ-SAC "ALG" entry
    "tmrl-redq": {
        "name": "redq",
        "redq": {
            "gamma": 0.995,
            "tau": 0.005,
            "lr_actor": 3e-4,
            "lr_critic": 5e-5,
            "lr_entropy": 3e-4,
            "alpha": 0.37,
            "learn_entropy": False,
            "target_entropy": -7.0,
            "n_critics": 10,
            "m_target": 2,
            "q_updates_per_policy_update": 20,
            "hidden": [256, 256],
        },
    },
    # the PPO LIDAR trainer of reference report 000
    "ppo-000": {
        "name": "ppo",
        "ppo": {
            "gamma": 0.99,
            "gae_lambda": 0.95,
            "clip": 0.2,
            "entropy_coef": 0.01,
            "value_coef": 0.5,
            "lr": 3e-4,
            "lr_value": 1e-3,
            "batch_size": 64,
            "n_steps": 2048,
            "epochs": 3,
            "max_grad_norm": 0.5,
            "activation": "relu",
            "hidden": [256, 256, 256],
        },
    },
}
"""Named algorithm presets: partial ``algo`` sections that fill the fields a config leaves unset."""


def _merge_under(preset: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``preset`` values filled in where ``data`` has no value (recursively)."""
    merged = dict(data)
    for key, value in preset.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = _merge_under(value, merged[key])
    return merged


class AlgoConfig(Section):
    preset: Literal["tmrl-sac", "tmrl-redq", "ppo-000"] | None = Field(
        None, description="named preset filling the algo fields this config leaves unset (null = none)"
    )
    name: str = Field("sac", description="sac, redq, ppo, or an import path module:Class of a TrainingAgent")
    amp: bool | None = Field(
        None, description="mixed precision: float16 autocast on CUDA, bfloat16 on the CPU; null = on with CUDA only"
    )
    sac: SACConfig = Field(default_factory=SACConfig, description="SAC settings")
    redq: REDQConfig = Field(default_factory=REDQConfig, description="REDQ-SAC settings")
    ppo: PPOConfig = Field(default_factory=PPOConfig, description="PPO settings")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in ALGO_PRESETS:
            return _merge_under(ALGO_PRESETS[data["preset"]], data)
        return data


class MemoryConfig(Section):
    capacity: int = Field(
        1_000_000, ge=1, description="steps kept over all cars (one per car per step, plus one per ended episode)"
    )
    batch_size: int = Field(256, ge=1, description="transitions per sampled batch")
    prioritized: bool = Field(False, description="prioritised replay (sum tree)")
    alpha: float = Field(0.6, ge=0, description="prioritisation exponent")
    beta: float = Field(0.4, ge=0, le=1, description="importance-sampling exponent")
    nstep: int = Field(
        3,
        ge=1,
        le=100,
        description="steps summed in the discounted return (1 = one-step TD); 1 when left unset with a Dyna model "
        "(algo.sac.model_ratio > 0)",
    )


DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")
"""The ``train.device`` strings EVO RL accepts (whether the device exists is checked at start-up)."""


class TrainConfig(Section):
    minutes: float | None = Field(None, gt=0, description="wall-clock budget of one session; null = until total_steps")
    total_steps: int = Field(2_000_000, ge=1, description="environment steps (all cars, all sessions) to train for")
    start_steps: int = Field(5000, ge=0, description="off-policy: random-action steps (all cars) before learning")
    updates_per_step: float = Field(0.25, gt=0, description="off-policy: gradient updates per step of one car")
    eval_every_minutes: float = Field(2.0, gt=0, description="evaluation schedule, minutes of unpaused time")
    eval_episodes: int = Field(
        10, ge=1, description="deterministic episodes per evaluation (one car each, at once); they pick the best policy"
    )
    param_noise: float = Field(
        0.0,
        ge=0,
        description="off-policy: act with parameter-space noise of this action distance (RMS), also in workers; 0: off",
    )
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant",
        description="learning rates over the run (its minutes or total_steps): constant, or falling to lr_final",
    )
    lr_final: float = Field(
        0.1, ge=0, le=1, description="learning rates at the end of the run, as a fraction of the configured ones"
    )
    demo_episodes: int = Field(
        0, ge=0, description="off-policy, simulator: expert episodes driven into the replay before training; 0: none"
    )
    bc_updates: int = Field(
        0, ge=0, description="behaviour-cloning batches of the actor on the demonstrations before training; 0: none"
    )
    checkpoint_every_minutes: float = Field(
        1.0, gt=0, description="checkpoint schedule, minutes of unpaused time (a kill -9 loses at most this much)"
    )
    keep_best: int = Field(3, ge=0, description="best checkpoints (by evaluation score) kept besides the last two")
    log_every_seconds: float = Field(5.0, gt=0, description="metrics.jsonl and TensorBoard interval, seconds")
    runs_dir: str = Field("runs", description="folder holding run folders")
    device: str = Field("auto", description="torch device: auto (cuda when available), cpu, cuda, cuda:N or mps")
    torch_threads: int = Field(
        0, ge=0, description="torch CPU threads; 0 = torch's default (all cores); 1 on a busy machine"
    )
    seed: int = Field(0, description="seed of torch and of the replay sampling")
    wandb: bool = Field(False, description="also log to Weights & Biases (needs the wandb package)")
    wandb_project: str = Field("evo-rl", description="Weights & Biases project of the run (train.wandb: true)")
    save_replay: bool = Field(True, description="store the replay memory with the checkpoints (resume keeps it)")
    dashboard: Literal["auto", "rich", "plain", "none"] = Field(
        "auto", description="auto: live view on a terminal, log lines otherwise; rich, plain or none force one"
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not DEVICE_PATTERN.fullmatch(value):
            raise PydanticCustomError(
                "device",
                "unknown torch device; use auto (cuda when available), cpu, cuda, cuda:N (N = GPU index) or mps",
            )
        return value


class DistConfig(Section):
    host: str = Field(
        "127.0.0.1", description="the server's address: where it listens, and where workers and the trainer connect"
    )
    port: int = Field(9300, ge=1, le=65535, description="the server's TCP port")
    max_workers: int = Field(
        4, ge=1, le=1024, description="worker ids 0..max_workers-1; the trainer's replay holds env.n_envs cars per id"
    )
    batch_steps: int = Field(
        1024, ge=1, description="transitions a worker gathers per batch (all its cars); also sent every batch_seconds"
    )
    batch_seconds: float = Field(0.5, gt=0, description="longest a transition waits in a worker before it is sent, s")
    compress: Literal["none", "lz4", "zstd"] = Field(
        "none", description="compression of sample batches: none, lz4 (pip install lz4) or zstd (pip install zstandard)"
    )
    keys_dir: str | None = Field(
        None,
        description="folder of CurveZMQ keys (`evo-rl keys generate`): server.key, this role's *.key_secret, and "
        "allowed/ with the public keys the server accepts; null: plaintext, loopback only",
    )
    allow_plaintext: bool = Field(
        False, description="allow unencrypted connections beyond loopback (a trusted private network only)"
    )
    spool_dir: str | None = Field(
        None, description="where a worker keeps unconfirmed batches on disk; null: <runs_dir>/spool/worker-<id>"
    )
    spool_mb: float = Field(
        1024, gt=0, description="disk a worker's spool may use, MiB; a full spool makes a lock-step worker wait"
    )
    weights_every_seconds: float = Field(1.0, gt=0, description="how often the trainer publishes new actor weights")
    resend_seconds: float = Field(
        2.0, gt=0, description="a batch not acknowledged within this time is sent again (the trainer drops duplicates)"
    )
    hold_steps: int = Field(
        4096,
        ge=1,
        description="car-steps of unpaid updates at which lock-step workers (sim, tmnf) wait for the trainer; "
        "real-time games never wait",
    )


class EvoConfig(Section):
    """The whole EVO RL configuration."""

    env: EnvConfig = Field(default_factory=EnvConfig, description="environment")
    sim: SimConfig = Field(default_factory=SimConfig, description="simulator stepping")
    car: CarConfig = Field(default_factory=CarConfig, description="car physics")
    lidar: LidarConfig = Field(default_factory=LidarConfig, description="LIDAR sensor")
    camera: CameraConfig = Field(default_factory=CameraConfig, description="first-person camera")
    reward: list[RewardTermConfig] = Field(default_factory=_default_reward, description="weighted reward terms")
    episode: EpisodeConfig = Field(default_factory=EpisodeConfig, description="end-of-episode rules")
    algo: AlgoConfig = Field(default_factory=AlgoConfig, description="learning algorithm")
    memory: MemoryConfig = Field(default_factory=MemoryConfig, description="replay memory")
    train: TrainConfig = Field(default_factory=TrainConfig, description="training loop")
    randomise: RandomiseConfig = Field(
        default_factory=RandomiseConfig, description="simulator domain randomisation: physics, sensors, latency"
    )
    game: GameConfig = Field(default_factory=GameConfig, description="a live game (env.source: tm2020)")
    dist: DistConfig = Field(default_factory=DistConfig, description="distributed training (server, trainer, workers)")

    @field_validator("reward")
    @classmethod
    def _some_reward(cls, value: list[RewardTermConfig]) -> list[RewardTermConfig]:
        if not value:
            raise PydanticCustomError(
                "empty_reward",
                "the list of reward terms is empty, so every step would be worth 0; "
                "add at least one term, e.g. `reward: [{term: progress_distance, weight: 0.1}]` "
                "(`evo-rl reward terms` lists them)",
            )
        return value

    @model_validator(mode="after")
    def _tracks_in_the_simulator(self) -> EvoConfig:
        if self.env.tracks is not None and self.env.source != "sim":
            raise PydanticCustomError(
                "tracks_sim_only",
                "env.tracks trains on many simulator tracks, but env.source is {source}; a game drives its "
                "loaded map: set env.tracks: null",
                {"source": self.env.source},
            )
        return self

    @model_validator(mode="after")
    def _model_learns_one_step(self) -> EvoConfig:
        sac = {"sac": self.algo.sac, "redq": self.algo.redq}.get(self.algo.name)
        if sac is None or sac.model_ratio == 0:
            return self
        name = f"algo.{self.algo.name}.model_ratio"
        if "nstep" not in self.memory.model_fields_set:  # the model learns one step: one-step returns by default
            self.memory.nstep = 1
        if self.memory.nstep > 1:
            raise PydanticCustomError(
                "config_conflict",
                "{name} learns a model of one step from the replay, but memory.nstep is {nstep}: "
                "set memory.nstep: 1 or {name}: 0",
                {"name": name, "nstep": self.memory.nstep},
            )
        if self.memory.prioritized:
            raise PydanticCustomError(
                "config_conflict",
                "{name} replaces part of every batch by imagined transitions, which have no replay priorities: "
                "set memory.prioritized: false or {name}: 0",
                {"name": name},
            )
        return self

    @model_validator(mode="after")
    def _ppo_rollout_holds_a_minibatch(self) -> EvoConfig:
        if self.algo.name != "ppo":
            return self
        ppo, n_envs = self.algo.ppo, self.env.n_envs
        if ppo.n_steps < n_envs:
            raise PydanticCustomError(
                "config_conflict",
                "algo.ppo.n_steps ({n_steps}) counts the steps of one rollout over all cars and must be at least "
                "env.n_envs ({n_envs}); raise algo.ppo.n_steps or lower env.n_envs",
                {"n_steps": ppo.n_steps, "n_envs": n_envs},
            )
        rollout = ppo.n_steps // n_envs * n_envs  # the rollout holds n_steps // n_envs steps of every car
        if ppo.batch_size > rollout:
            raise PydanticCustomError(
                "config_conflict",
                "algo.ppo.batch_size ({batch}) is larger than a PPO rollout: algo.ppo.n_steps ({n_steps}) over "
                "env.n_envs ({n_envs}) cars holds {rollout} steps, so every minibatch would be the whole rollout; "
                "set algo.ppo.batch_size to at most {rollout} or raise algo.ppo.n_steps",
                {"batch": ppo.batch_size, "n_steps": ppo.n_steps, "n_envs": n_envs, "rollout": rollout},
            )
        return self


# --------------------------------------------------------------------------- loading

MAX_SHOWN_ERRORS = 10
"""Validation messages shown at most; the rest are counted (``... and N more``)."""


def format_validation_errors(err: ValidationError, source: str) -> str:
    """A pydantic ``ValidationError`` of :class:`EvoConfig` as one message for a :class:`ConfigError`.

    One line per mistake, each naming the field path (``env.n_envs``), the bad
    value and the rule it breaks; an unknown key lists the keys its section
    allows. ``source`` says where the values came from (a file, ``+ overrides``).
    At most :data:`MAX_SHOWN_ERRORS` lines are shown, then ``... and N more``.
    """
    errors = err.errors()
    lines = [f"invalid configuration ({source}):"]
    for e in errors[:MAX_SHOWN_ERRORS]:
        lines.append("  " + _format_error(e))
    if len(errors) > MAX_SHOWN_ERRORS:
        lines.append(f"  ... and {len(errors) - MAX_SHOWN_ERRORS} more")
    return "\n".join(lines)


def field_path(loc: tuple | list) -> str:
    """A pydantic error location as the user writes the field: ``reward[0].weight``, ``algo.sac.hidden[1]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _format_error(e: Any) -> str:
    path = field_path(e["loc"])
    if e["type"] == "extra_forbidden":
        parent = field_path(e["loc"][:-1])
        return f"{path}: unknown key; allowed keys of {parent or 'the top level'}: {_allowed(e['loc'][:-1])}"
    msg = e["msg"].removeprefix("Value error, ")
    value = e.get("input")
    if not path:  # a rule over several sections: the message names the fields
        return msg
    if isinstance(value, dict) and e["type"] in ("value_error", "config_conflict"):  # a rule over a section's fields
        return f"{path}: {msg}"
    shown = repr(value) if not isinstance(value, str) or len(value) <= 60 else repr(value[:60])
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{path} = {shown}: {msg}"


def _allowed(loc: tuple) -> str:
    model: Any = EvoConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return "?"
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return "?"
    return ", ".join(model.model_fields)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A YAML mapping holds the same key twice (see :class:`UniqueKeyLoader`)."""

    def __init__(self, key: Any, first_line: int, node: yaml.Node) -> None:
        self.key = key
        self.first_line = first_line  # 1-based
        self.line = node.start_mark.line + 1
        super().__init__(None, None, f"key {key!r} appears twice (lines {first_line} and {self.line})", node.start_mark)


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's ``SafeLoader`` that refuses a key repeated in one mapping.

    The default loaders keep the last value silently, so a config with
    ``n_envs`` written twice would train with whichever comes last. Merge keys
    (``<<: *anchor``) may still be overridden by the mapping's own keys.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise DuplicateKeyError(key, first, key_node)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key=value`` into a path and a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. env.n_envs=8)")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} names no field")
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else ""  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    return path, value


def set_field(data: dict, path: list[str], value: Any, label: str) -> None:
    """Set ``data[path[0]][path[1]]... = value`` in a config dict, creating missing sections.

    ``label`` is the override as the user wrote it, for the message when a part
    of the path is a value rather than a section.
    """
    node = data
    for part in path[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {label!r}: {part} is not a section")
        node = nxt
    node[path[-1]] = value


def apply_overrides(data: dict, overrides: Iterable[str] | Mapping[str, Any]) -> dict:
    """Apply overrides to a config dict in place and return it.

    ``overrides`` are either ``section.key=value`` texts (the command line; the
    value is parsed as YAML) or a mapping ``{"section.key": value}`` of Python
    values. Later overrides win. Validate the result with :func:`validate_config`.
    """
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            path = [p for p in str(key).split(".") if p]
            if not path:
                raise ConfigError(f"override {key!r} names no field")
            set_field(data, path, value, f"{key}={value!r}")
        return data
    if isinstance(overrides, str):
        raise ConfigError(f"overrides must be a list of section.key=value texts, got the text {overrides!r}")
    for text in overrides:
        path, value = parse_override(text)
        set_field(data, path, value, text)
    return data


def validate_config(data: Any, source: str) -> EvoConfig:
    """An :class:`EvoConfig` from a config dict; a mistake raises :class:`ConfigError`.

    The message (see :func:`format_validation_errors`) names ``source``, every
    bad field, its value and the rule it breaks.
    """
    try:
        return EvoConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_errors(e, source)) from None


def read_config_file(path: str | Path) -> dict:
    """The mapping a YAML config file holds (``{}`` for an empty file).

    Raises :class:`ConfigError` naming the file when it is missing, unreadable,
    not UTF-8 text, not YAML, holds a key twice or is not a mapping.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    if not p.is_file():
        raise ConfigError(f"config file {p} is not a file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"config file {p} cannot be read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {p} is not a text file: byte 0x{raw[e.start]:02x} at offset {e.start} is not UTF-8; "
            "a config is a YAML text file (`evo-rl config show` prints a complete one)"
        ) from None
    try:
        loaded = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except DuplicateKeyError as e:
        raise ConfigError(
            f"config file {p}: key {e.key!r} appears twice in one section (lines {e.first_line} and {e.line}); "
            "YAML would keep only the last, so delete one of them"
        ) from None
    except yaml.reader.ReaderError as e:  # a control character: most likely a binary file
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(
            f"config file {p} is not valid YAML at line {line}: character {chr(e.character)!r} is not allowed "
            "in YAML text; a config is a YAML text file, not a binary one"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or e
        raise ConfigError(f"config file {p} is not valid YAML{where}: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections, found {type(loaded).__name__}")
    return loaded


def load_config(path: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] = ()) -> EvoConfig:
    """Read a YAML config (defaults when ``path`` is None), apply overrides and validate.

    ``overrides`` as in :func:`apply_overrides`. Every mistake raises :class:`ConfigError`.
    """
    data: dict = {} if path is None else read_config_file(path)
    source = "defaults" if path is None else str(path)
    overrides = overrides if isinstance(overrides, Mapping) else list(overrides)
    apply_overrides(data, overrides)
    if overrides:
        source += " + overrides"
    return validate_config(data, source)


def config_to_yaml(cfg: EvoConfig) -> str:
    """The resolved config as YAML, sections in declaration order."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def import_object(spec: str, what: str = "component") -> Any:
    """Import ``module:Name`` (or ``module.Name``); errors say which part failed."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
    elif "." in spec:
        module_name, _, attr = spec.rpartition(".")
    else:
        raise ConfigError(f"{what} {spec!r} is not an import path; write it as module:Name (e.g. mypkg.rewards:MyTerm)")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import failure is reported the same way
        raise ConfigError(f"{what} {spec!r}: cannot import module {module_name!r}: {type(e).__name__}: {e}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def field_docs(model: type[BaseModel] = EvoConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(path, default, description) of every field, for help output and docs."""
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(field_docs(ann, path + "."))
        else:
            default = field.get_default(call_default_factory=True)
            if isinstance(default, list) and default and isinstance(default[0], BaseModel):
                default = [d.model_dump() for d in default]
            rows.append((path, repr(default), field.description or ""))
    return rows
