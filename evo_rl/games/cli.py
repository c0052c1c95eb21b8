"""``evo-rl game tm2020 install-plugin|watch`` and ``evo-rl virtual-game tm2020``.

Registered like the modules of :mod:`evo_rl.cli`: ``register(subparsers)`` adds the ``game`` and
``virtual-game`` sub-commands.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from evo_rl.errors import EvoError


def register(sub: argparse._SubParsersAction) -> None:
    game = sub.add_parser("game", help="the real games: install the TrackMania 2020 plugin, watch its telemetry")
    games = game.add_subparsers(dest="game", metavar="GAME", required=True)
    tm = games.add_parser("tm2020", help="TrackMania 2020 through OpenPlanet")
    actions = tm.add_subparsers(dest="game_action", metavar="ACTION", required=True)

    install = actions.add_parser(
        "install-plugin",
        help="build the OpenPlanet plugin (.op) and copy it into OpenplanetNext/Plugins",
        description="Builds the EVO RL OpenPlanet plugin archive and copies it into OpenPlanet's Plugins folder, "
        "found in the Windows user profile or in Proton/Wine prefixes. OpenPlanet loads unsigned plugins only in "
        "Developer mode; docs/games.md explains, and how to use TMRL's signed plugin instead.",
    )
    install.add_argument("--dir", default=None, help="OpenPlanet's Plugins folder (default: found automatically)")
    install.add_argument(
        "--source", default=None, help="folder of the plugin sources (default: evo_rl/games/tm2020/plugin)"
    )
    install.add_argument("--json", action="store_true", help="print one JSON object")
    install.set_defaults(func=_install)

    watch = actions.add_parser("watch", help="print the telemetry records the game sends, one JSON object a line")
    _add_protocol_args(watch)
    watch.add_argument("--records", type=int, default=10, help="records to print (default: 10)")
    watch.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each record (default: 5)")
    watch.set_defaults(func=_watch)

    virtual = sub.add_parser("virtual-game", help="run a virtual game: the simulator serving a game's protocol")
    vgames = virtual.add_subparsers(dest="virtual_game", metavar="GAME", required=True)
    vtm = vgames.add_parser(
        "tm2020",
        help="a virtual TrackMania 2020 on 127.0.0.1",
        description="Runs the simulator in real time as a virtual TrackMania 2020: telemetry in the plugin's "
        "protocol on --port, inputs (VirtualInput) and the cockpit view (VirtualScreen) on --input-port. "
        "Ctrl-C stops it.",
    )
    vtm.add_argument("--track", "-t", default="evo-test", help="built-in track name or .track file")
    _add_protocol_args(vtm)
    vtm.add_argument("--input-port", type=int, default=None, help="port of the input and screen (default: port + 1)")
    vtm.add_argument("--time-scale", type=float, default=1.0, help="game seconds per real second (default: 1)")
    vtm.add_argument("--frame-rate", type=int, default=100, help="physics frames per game second (default: 100)")
    vtm.add_argument("--seconds", type=float, default=None, help="stop after this many real seconds")
    vtm.set_defaults(func=_virtual)


def _add_protocol_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", choices=["evo", "tmrl"], default="evo", help="telemetry protocol (default: evo)")
    p.add_argument("--port", type=int, default=None, help="telemetry port on 127.0.0.1 (default: 9100; tmrl: 9000)")


def _install(args: argparse.Namespace) -> int:
    from evo_rl.games.tm2020.install import install_plugin

    written = install_plugin(Path(args.dir) if args.dir else None, source=Path(args.source) if args.source else None)
    if args.json:
        print(json.dumps({"installed": [str(w) for w in written]}))
        return 0
    for w in written:
        print(f"installed {w}")
    print(
        "In the game: F3 opens OpenPlanet; switch Developer > Signature Mode to Developer (unsigned plugins load "
        "only in Developer mode), then load 'EVO RL telemetry' from Developer > Load plugin."
    )
    return 0


def _watch(args: argparse.Namespace) -> int:
    from evo_rl.games.tm2020.client import TM2020Client

    if args.records < 1:
        raise EvoError(f"--records {args.records}: give at least 1")
    with TM2020Client(port=args.port, protocol=args.protocol) as client:
        seq = -1
        for _ in range(args.records):
            t = client.wait_newer(seq, timeout=args.timeout)
            seq = t.seq
            print(json.dumps({"seq": t.seq, **asdict(t.record)}), flush=True)
    return 0


def _virtual(args: argparse.Namespace) -> int:
    from evo_rl.games.tm2020.virtual import VirtualTM2020

    if args.seconds is not None and not args.seconds > 0:
        raise EvoError(f"--seconds {args.seconds}: give a positive number")
    game = VirtualTM2020(
        track=args.track, port=args.port, protocol=args.protocol, time_scale=args.time_scale,
        frame_rate=args.frame_rate, input_port=args.input_port,
    )  # fmt: skip
    print(
        f"virtual TrackMania 2020 on track {game.track.name}: telemetry ({args.protocol} protocol) on "
        f"127.0.0.1:{game.port}, input and screen on 127.0.0.1:{game.input_port}, time scale {game.time_scale:g}x; "
        "Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    if args.seconds is None:
        game.run_forever()
        return 0
    with game:
        time.sleep(args.seconds)
    return 0
