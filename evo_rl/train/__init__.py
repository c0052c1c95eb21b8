"""Training: the loop, run folders, checkpoints, evaluation, logging and the dashboard.

| module | what it holds |
|---|---|
| `loop` | `Trainer`: the off-policy and on-policy training loops, schedules, signals, pause |
| `run` | `RunDir`, `create_run`, `resolve_run`: the run folder and its control files |
| `checkpoint` | `CheckpointManager`: atomic, verified checkpoints; RNG state capture |
| `evaluate` | `Evaluator`, `EvalResult`: deterministic episodes against the reference lap time |
| `policy` | `save_policy`, `load_policy`: actor weights + config as safetensors |
| `logger` | `MetricsLogger`: metrics.jsonl, TensorBoard, Weights & Biases |
| `dashboard` | `Dashboard`: the live terminal view or plain log lines |
| `plot` | `plot_run`: learning curves as a PNG |
| `demo` | `drive_lap`, `write_animation`: one recorded lap as a GIF |

The modules import torch and the simulator; import them directly (this package
imports nothing, so ``evo-rl --help`` stays fast).
"""
