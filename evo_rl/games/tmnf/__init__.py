"""TrackMania Nations Forever through TMInterface: the lock-step protocol, the client, the car source and
the virtual TMNF (docs/games.md)."""
