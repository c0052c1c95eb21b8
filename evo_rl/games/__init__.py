"""Live games: the game-side layers that connect EVO RL to TrackMania.

- :mod:`evo_rl.games.tm2020.source`: TrackMania 2020 as a car source (the contract of
  :mod:`evo_rl.envs.source`), and :mod:`evo_rl.games.realtime`: the real-time environment on rtgym;
- :mod:`evo_rl.games.control`: input backends (a virtual input for the virtual games, a gamepad);
- :mod:`evo_rl.games.capture`: screen backends (a virtual screen, mss screenshots);
- :mod:`evo_rl.games.tm2020`: TrackMania 2020 through OpenPlanet: the record protocol, the client,
  the plugin installer and the virtual TrackMania 2020.

Game-only packages (vgamepad, mss, rtgym) are imported lazily; without them a clear
message names the ``game`` extra to install. Everything here is documented in docs/games.md.
"""
