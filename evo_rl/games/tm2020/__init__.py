"""TrackMania 2020 through OpenPlanet: :mod:`.protocol` (the record layouts), :mod:`.client` (telemetry and
commands), :mod:`.install` (the plugin archive and its installation) and :mod:`.virtual` (the virtual game)."""
