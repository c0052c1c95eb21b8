"""The exceptions EVO RL raises for user mistakes.

Every message names what was wrong (a field, a file and line, a value) and how to
fix it. The CLI prints these without a traceback.
"""


class EvoError(Exception):
    """A mistake the user can fix: bad input, a bad file, a bad setting."""


class ConfigError(EvoError):
    """A configuration value or file is invalid."""


class TrackError(EvoError):
    """A track file, centreline or generated track is invalid."""


class CheckpointError(EvoError):
    """A checkpoint or run folder cannot be read."""
