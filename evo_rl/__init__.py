"""EVO RL: real-time reinforcement learning for TrackMania, with a built-in simulator."""

__version__ = "0.1.0"
