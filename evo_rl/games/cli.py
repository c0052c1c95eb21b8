"""``evo-rl game tm2020 install-plugin|watch|check|record-reward|record-track`` and ``evo-rl virtual-game tm2020``.

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
from typing import TYPE_CHECKING

from evo_rl.errors import EvoError

if TYPE_CHECKING:
    from evo_rl.games.record import RecordedLap


def register(sub: argparse._SubParsersAction) -> None:
    game = sub.add_parser(
        "game", help="the real games: install the TrackMania 2020 plugin, check the setup, watch, record laps"
    )
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

    check = actions.add_parser(
        "check",
        help="check step by step what works and what is missing to drive the game",
        description="Checks, one line each (ok / missing / failed / skipped, and what to do): the game extra's "
        "packages, the plugin in OpenPlanet's Plugins folder, the game window (Windows), telemetry on 127.0.0.1 "
        "and its record rate, the plugin's commands, the virtual gamepad (Windows). Exit status 0 when "
        "everything needed works, 1 otherwise.",
    )
    _add_protocol_args(check)
    check.add_argument("--dir", default=None, help="OpenPlanet's Plugins folder (default: found automatically)")
    check.add_argument("--seconds", type=float, default=2.0, help="seconds to wait for telemetry (default: 2)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=_check)

    reward = actions.add_parser(
        "record-reward",
        help="drive the map once and save the lap as a reference trajectory (episode.reference)",
        description="Starts a run from the start line (the respawn command; with --protocol tmrl, press respawn "
        "yourself), records the car's positions from the telemetry while you drive, stops at the finish line, "
        "resamples the lap evenly and saves it as .npy or .csv for episode.reference. A lap that does not reach "
        "the finish within --max-seconds is not saved unless --allow-unfinished.",
    )
    reward.add_argument("--out", default="reference.npy", help="output file, .npy or .csv (default: reference.npy)")
    _add_record_args(reward)
    reward.set_defaults(func=_record_reward)

    track = actions.add_parser(
        "record-track",
        help="drive the map once and turn the lap into a simulator track (.track) and its reference",
        description="Records a lap as record-reward does (or reads one with --from-reference), then builds a "
        "simulator track around it: the lap smoothed and resampled is the centre line, --width the road width "
        "(the telemetry does not give it), the start line where the car spawned, the finish line where it "
        "finished, the checkpoint gates where the game counted them. Writes the .track file and the lap as its "
        "reference trajectory next to it.",
    )
    track.add_argument("--out", required=True, help="output track file, .track")
    track.add_argument(
        "--width", type=float, default=None, help="road width, m, wall to wall (default: 20, the built-in tracks')"
    )
    track.add_argument("--name", default=None, help="track name (default: the file name without .track)")
    track.add_argument(
        "--checkpoints",
        type=int,
        default=None,
        help="checkpoint gates spread evenly (default: where the game counted them; 4 without that information)",
    )
    track.add_argument(
        "--reference", default=None, help="where to write the lap, .npy or .csv (default: the --out file with .npy)"
    )
    track.add_argument(
        "--from-reference",
        default=None,
        metavar="FILE",
        help="build the track from a recorded trajectory (.npy/.csv, spawn to finish) instead of driving",
    )
    _add_record_args(track)
    track.set_defaults(func=_record_track)

    tmnf = games.add_parser("tmnf", help="TrackMania Nations Forever through TMInterface 2")
    tmnf_actions = tmnf.add_subparsers(dest="game_action", metavar="ACTION", required=True)
    tmnf_install = tmnf_actions.add_parser(
        "install-plugin", help="write the EVO RL TMInterface plugin into TMInterface/Plugins"
    )
    tmnf_install.add_argument("--dir", default=None, help="TMInterface's Plugins folder (default: found)")
    tmnf_install.set_defaults(func=_tmnf_install)
    tmnf_check = tmnf_actions.add_parser("check", help="what works and what is missing, step by step")
    tmnf_check.add_argument("--ports", type=int, nargs="+", default=[9200], help="instances' ports (default 9200)")
    tmnf_check.add_argument("--dir", default=None, help="TMInterface's Plugins folder (default: found)")
    tmnf_check.add_argument("--json", action="store_true", help="print one JSON object")
    tmnf_check.set_defaults(func=_tmnf_check)
    tmnf_launch = tmnf_actions.add_parser(
        "launch",
        help="start N TMNF instances, one port each, and restart those that crash",
        description="Starts --instances copies of --command, {port} replaced by 9200, 9201, ... (--port), and "
        "restarts one whose process ends. Windows: TMLoader; Linux: the same through Wine; any OS: "
        "`evo-rl virtual-game tmnf --port {port}`. Ctrl-C stops them all.",
    )
    tmnf_launch.add_argument("--instances", type=int, default=1, help="instances (default: 1)")
    tmnf_launch.add_argument("--port", type=int, default=9200, help="port of the first instance (default: 9200)")
    tmnf_launch.add_argument(
        "--command",
        required=True,
        help='the command starting one instance, with {port}, e.g. \'"C:/TMLoader/TMLoader.exe" run TmForever '
        '"default" /configstring="set evorl_port {port}"\'',
    )
    tmnf_launch.add_argument(
        "--reports", default=None, help="folder of hung-instance reports (game.launcher_dir; default: a temp folder)"
    )
    tmnf_launch.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    tmnf_launch.add_argument(
        "--tile",
        type=int,
        nargs=2,
        metavar=("W", "H"),
        default=None,
        help="start the instances one at a time, give each window a W x H client area in a grid, and write "
        "the regions to windows.json in --reports, for env.flavour: full with game.screen: window",
    )
    tmnf_launch.add_argument("--columns", type=int, default=2, help="--tile: windows per row (default: 2)")
    tmnf_launch.add_argument(
        "--gap", type=int, default=48, help="--tile: pixels between windows, for title bars and borders (default: 48)"
    )
    tmnf_launch.add_argument(
        "--window-title", default="TrackMania", help="--tile: text in the game window's title (default: TrackMania)"
    )
    tmnf_launch.set_defaults(func=_tmnf_launch)

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
    vtm.add_argument(
        "--screen",
        choices=("cockpit", "camera"),
        default="cockpit",
        help="the window the screen shows: cockpit (TMRL's 958x488 view, borders black; default) or camera "
        "(the simulator's camera)",
    )
    vtm.add_argument("--seconds", type=float, default=None, help="stop after this many real seconds")
    vtm.set_defaults(func=_virtual)

    vtn = vgames.add_parser(
        "tmnf",
        help="virtual TMNF instances on 127.0.0.1 (lock-step, speed-up, rewind)",
        description="Runs the simulator as TrackMania Nations Forever instances speaking the EVO RL TMInterface "
        "plugin's lock-step protocol, instance k on --port + k. Ctrl-C stops them.",
    )
    vtn.add_argument("--track", "-t", default="evo-test", help="built-in track name or .track file")
    vtn.add_argument("--port", type=int, default=9200, help="port of the first instance (default: 9200)")
    vtn.add_argument("--instances", type=int, default=1, help="instances (default: 1)")
    vtn.add_argument("--speed", type=float, default=1.0, help="game speed 1..100 (default: 1)")
    vtn.add_argument(
        "--unpaced", action="store_true", help="no game-speed pacing: steps as fast as they come (protocol benchmarks)"
    )
    vtn.add_argument("--seconds", type=float, default=None, help="stop after this many real seconds")
    vtn.set_defaults(func=_virtual_tmnf)


def _add_protocol_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", choices=["evo", "tmrl"], default="evo", help="telemetry protocol (default: evo)")
    p.add_argument("--port", type=int, default=None, help="telemetry port on 127.0.0.1 (default: 9100; tmrl: 9000)")


def _add_record_args(p: argparse.ArgumentParser) -> None:
    from evo_rl.rewards.reference_trajectory import SPACING

    _add_protocol_args(p)
    p.add_argument(
        "--max-seconds", type=float, default=300.0, help="real seconds to wait for the finish line (default: 300)"
    )
    p.add_argument("--allow-unfinished", action="store_true", help="save a lap that did not reach the finish line")
    p.add_argument(
        "--spacing", type=float, default=SPACING, help=f"metres between the saved points (default: {SPACING:g})"
    )
    p.add_argument(
        "--timeout", type=float, default=2.0, help="seconds without a record before the lap is abandoned (default: 2)"
    )
    p.add_argument(
        "--autopilot",
        default=None,
        metavar="TRACK",
        help="a virtual game only: drive it along TRACK's centre line (its --track) through its input port",
    )
    p.add_argument("--input-port", type=int, default=None, help="the virtual game's input port (default: port + 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


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


def _check(args: argparse.Namespace) -> int:
    from evo_rl.games.check import as_json, exit_status, format_checks, run_checks
    from evo_rl.games.tm2020 import protocol as p

    if not args.seconds > 0:
        raise EvoError(f"--seconds {args.seconds}: give a positive number")
    port = args.port if args.port is not None else (p.DEFAULT_PORT if args.protocol == "evo" else p.TMRL_PORT)
    if not args.json:
        print(f"checking TrackMania 2020 ({args.protocol} protocol, telemetry on 127.0.0.1:{port})", flush=True)
    checks = run_checks(port, args.protocol, Path(args.dir) if args.dir else None, args.seconds)
    if args.json:
        print(json.dumps(as_json(checks, port, args.protocol)))
    else:
        print(format_checks(checks), end="")
    return exit_status(checks)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _drive(args: argparse.Namespace) -> RecordedLap:
    """One lap from the game (or a virtual game with --autopilot), refused when unfinished unless allowed."""
    from evo_rl.games.control import VirtualInput
    from evo_rl.games.errors import GameError
    from evo_rl.games.record import CentrelineDriver, record_lap
    from evo_rl.games.tm2020.client import TM2020Client
    from evo_rl.sim.catalog import get_track

    driver = CentrelineDriver(get_track(args.autopilot), heading=args.protocol == "evo") if args.autopilot else None
    with TM2020Client(port=args.port, protocol=args.protocol) as client:
        inputs = None
        if driver is not None:
            inputs = VirtualInput(args.input_port if args.input_port is not None else client.port + 1, timeout=5.0)
        who = f"the autopilot drives along {args.autopilot}'s centre line" if driver else "you drive"
        _say(f"recording a lap from 127.0.0.1:{client.port} ({args.protocol} protocol), {who}; Ctrl-C stops")
        try:
            lap = record_lap(client, inputs, driver, args.max_seconds, args.timeout, _say)
        finally:
            if inputs is not None:
                inputs.close()
    if not lap.finished and not args.allow_unfinished:
        raise GameError(
            f"the lap did not reach the finish line within --max-seconds {args.max_seconds:g} ({len(lap.positions)} "
            f"points, {lap.length:.0f} m); nothing was written. Drive to the finish line, raise --max-seconds, or "
            "keep the lap anyway with --allow-unfinished"
        )
    return lap


def _lap_summary(lap: RecordedLap, points: int, length: float, spacing: float) -> dict[str, object]:
    return {
        "points": points,  # saved points
        "spacing_m": spacing,
        "length_m": round(length, 2),
        "finished": lap.finished,
        "lap_time_s": lap.lap_time,
        "time": lap.time_source,  # race: the game's race time; clock: measured here (TMRL gives no race time)
        "protocol": lap.protocol,
        "samples": len(lap.positions),
        "records": lap.records,
        "restarts": lap.restarts,
        "rewinds": lap.rewinds,
    }


def _lap_time_text(lap: RecordedLap) -> str:
    if lap.lap_time is None:
        return "did not finish"
    source = "race time" if lap.time_source == "race" else "measured by the clock: TMRL gives no race time"
    return f"lap time {lap.lap_time:.2f} s ({source})"


def _record_reward(args: argparse.Namespace) -> int:
    import numpy as np

    from evo_rl.games.record import check_output, reference_points, save_reference_atomic

    out = check_output(args.out, (".npy", ".csv"), "--out")
    lap = _drive(args)
    points = reference_points(lap.positions, args.spacing)
    save_reference_atomic(out, points)
    length = float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())
    summary = {"out": str(out), **_lap_summary(lap, len(points), length, args.spacing)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"saved {out}: {len(points)} points every {args.spacing:g} m, {length:.1f} m, {_lap_time_text(lap)}")
        print(f"use it with: episode.reference={out}")
    return 0


def _record_track(args: argparse.Namespace) -> int:
    import numpy as np

    from evo_rl.errors import TrackError
    from evo_rl.games.record import (
        DEFAULT_WIDTH,
        check_output,
        reference_points,
        save_reference_atomic,
        track_from_lap,
        write_atomic,
    )
    from evo_rl.rewards.reference_trajectory import load_reference, save_reference
    from evo_rl.sim.track_format import format_track

    out = check_output(args.out, (".track",), "--out")
    width = DEFAULT_WIDTH if args.width is None else args.width
    if not (width > 0 and np.isfinite(width)):
        raise EvoError(f"--width {args.width}: give a positive number of metres")
    if args.checkpoints is not None and args.checkpoints < 0:
        raise EvoError(f"--checkpoints {args.checkpoints}: give 0 or more")
    name = args.name or out.stem
    lap: RecordedLap | None = None
    if args.from_reference:
        source = Path(args.from_reference)
        positions = load_reference(source)
        ref_out = None if args.reference is None else check_output(args.reference, (".npy", ".csv"), "--reference")
    else:
        ref_out = check_output(args.reference or out.with_suffix(".npy"), (".npy", ".csv"), "--reference")
        lap = _drive(args)
        positions = lap.positions
    cp_points = lap.checkpoint_points() if lap is not None and args.checkpoints is None else None
    points = reference_points(positions, args.spacing)
    try:
        track = track_from_lap(positions, width, name, cp_points, 4 if args.checkpoints is None else args.checkpoints)
    except TrackError as e:
        kept = ""
        if lap is not None and ref_out is not None:  # keep the drive: the track can be retried from it
            save_reference_atomic(ref_out, points)
            kept = f"; the lap was saved to {ref_out}: retry with --from-reference {ref_out} and another --width"
        raise TrackError(f"the recorded lap does not make a track with --width {width:g}: {e}{kept}") from None
    text = format_track(track)
    files = [(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))]
    if ref_out is not None:
        files.append((ref_out, lambda tmp: save_reference(tmp, points)))
    write_atomic(files)
    length = float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())
    reference = str(ref_out) if ref_out is not None else str(args.from_reference)
    summary: dict[str, object] = {
        "out": str(out),
        "track": track.name,
        "track_length_m": round(track.length, 2),
        "width_m": track.width,
        "checkpoints": len(track.checkpoints),
        "reference": reference,
    }
    if lap is not None:
        summary.update(_lap_summary(lap, len(points), length, args.spacing))
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"saved {out}: track {track.name!r}, {track.length:.1f} m from start to finish, {track.width:g} m wide, "
        f"{len(track.checkpoints)} checkpoints"
    )
    if lap is not None:
        print(f"saved {ref_out}: {len(points)} points every {args.spacing:g} m, {length:.1f} m, {_lap_time_text(lap)}")
    print(f"use them with: env.track={out} episode.reference={reference}")
    return 0


def _tmnf_install(args: argparse.Namespace) -> int:
    from evo_rl.games.tmnf.install import install_plugin

    path = install_plugin(Path(args.dir) if args.dir else None)
    print(f"installed {path}; in the game open TMInterface's console and load it with `plugins`, then set evorl_port")
    return 0


def _tmnf_check(args: argparse.Namespace) -> int:
    from evo_rl.games.tmnf.check import format_checks, run_checks

    checks = run_checks(args.ports, Path(args.dir) if args.dir else None)
    if args.json:
        print(json.dumps({"checks": [asdict(c) for c in checks]}))
    else:
        print(format_checks(checks))
    return 0 if all(c.status == "ok" for c in checks) else 1


def _tmnf_launch(args: argparse.Namespace) -> int:
    from evo_rl.games.tmnf.launch import Launcher

    if args.instances < 1:
        raise EvoError(f"--instances {args.instances}: give at least 1")
    ports = [args.port + k for k in range(args.instances)]
    tiling = None
    if args.tile is not None:
        from evo_rl.games.tmnf.windows import Tiling

        width, height = args.tile
        tiling = Tiling(width, height, columns=args.columns, gap=args.gap, title=args.window_title)
    launcher = Launcher(args.command, ports, args.reports, tiling=tiling).start()
    print(f"{len(ports)} TMNF instance(s) on ports {', '.join(map(str, ports))}; Ctrl-C stops them", flush=True)
    for port, region in launcher.regions.items():
        print(f"  port {port}: window at {region.left},{region.top}, {region.width} x {region.height}", flush=True)
    try:
        time.sleep(args.seconds if args.seconds is not None else 10**9)
    except KeyboardInterrupt:
        pass
    finally:
        launcher.stop()
    print(f"stopped; restarts per instance: {launcher.restarts}")
    return 0


def _virtual_tmnf(args: argparse.Namespace) -> int:
    from evo_rl.games.tmnf.virtual import VirtualTMNF

    if args.instances < 1:
        raise EvoError(f"--instances {args.instances}: give at least 1")
    games: list[VirtualTMNF] = []
    try:
        for k in range(args.instances):
            games.append(VirtualTMNF(args.track, port=args.port + k, speed=args.speed, paced=not args.unpaced).start())
        ports = ", ".join(str(g.port) for g in games)
        print(
            f"virtual TMNF on track {games[0].track.name}: {len(games)} instance(s) on 127.0.0.1 ports {ports}, "
            f"speed {args.speed:g}x; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(args.seconds if args.seconds is not None else 10**9)
    except KeyboardInterrupt:
        pass
    finally:
        for g in games:
            g.stop()
    return 0


def _virtual(args: argparse.Namespace) -> int:
    from evo_rl.games.tm2020.virtual import VirtualTM2020

    if args.seconds is not None and not args.seconds > 0:
        raise EvoError(f"--seconds {args.seconds}: give a positive number")
    game = VirtualTM2020(
        track=args.track, port=args.port, protocol=args.protocol, time_scale=args.time_scale,
        frame_rate=args.frame_rate, input_port=args.input_port, screen=args.screen,
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
