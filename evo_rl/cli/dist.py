"""``evo-rl server``, ``evo-rl trainer``, ``evo-rl worker`` and ``evo-rl keys``: distributed
training across processes and machines (docs/distributed.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from evo_rl.cli.common import add_config_args, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "server",
        help="relay samples from workers to the trainer and weights back (distributed training)",
        description="Relay sample batches from rollout workers to the trainer and weights back. Workers and the "
        "trainer that join get this config; one whose observation layout or algorithm differs is refused.",
    )
    add_config_args(p)
    p.set_defaults(func=_server)

    p = sub.add_parser(
        "trainer",
        help="learn from the workers' samples (distributed training)",
        description="The learner of a distributed run: like `evo-rl train`, but fed by `evo-rl worker`s through "
        "`evo-rl server`. Writes the same run folder; --resume continues it from its last checkpoint.",
    )
    add_config_args(p)
    p.add_argument("--minutes", "-m", type=float, default=None, help="stop after M minutes (evaluate and save first)")
    p.add_argument("--name", "-n", default=None, help="run name (default: a timestamp)")
    p.add_argument("--resume", "-r", metavar="RUN", default=None, help="continue RUN from its last good checkpoint")
    p.set_defaults(func=_trainer, source=None, init=None, workers=None, ray=None)

    p = sub.add_parser(
        "worker",
        help="drive cars and send their samples to the trainer (distributed training)",
        description="A rollout worker: it takes the server's config (overrides may set only the game, dist and "
        "sim sections, env.source, env.seed and train.device), drives env.n_envs cars with the latest weights and "
        "sends every transition to the trainer, keeping unconfirmed batches in a spool on disk.",
    )
    add_config_args(p)
    p.add_argument("--id", type=int, required=True, help="worker id, 0 .. dist.max_workers - 1 (one per worker)")
    p.add_argument("--steps", type=int, default=None, help="stop once this many transitions were produced")
    p.add_argument("--name", default=None, help="name shown by the server (default: worker-ID)")
    p.set_defaults(func=_worker)

    p = sub.add_parser("keys", help="CurveZMQ keys for distributed training", description="CurveZMQ keys.")
    ks = p.add_subparsers(dest="keys_command", metavar="COMMAND")
    g = ks.add_parser(
        "generate",
        help="write server, trainer and worker key pairs and the server's allow-list",
        description="Write server, trainer and worker key pairs into DIR and the trainer's and worker's public "
        "keys into DIR/allowed/ (the server accepts those). Give every machine DIR with the secret keys of its "
        "own role only, and set dist.keys_dir=DIR.",
    )
    g.add_argument("dir", help="folder to write the keys to")
    g.add_argument("--overwrite", action="store_true", help="replace existing keys")
    g.set_defaults(func=_keys_generate)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _server(args: argparse.Namespace) -> int:
    from evo_rl.dist.server import Server

    Server(config_from_args(args)).run()
    return 0


def _trainer(args: argparse.Namespace) -> int:
    from evo_rl.cli.train import _train

    return _train(args, distributed=True)


def _worker(args: argparse.Namespace) -> int:
    from evo_rl.dist.worker import Worker

    cfg = config_from_args(args)
    own = cfg if args.config is not None else None
    worker = Worker(
        cfg, args.id, overrides=list(args.overrides or []), own_config=own, steps=args.steps, name=args.name
    )
    result = worker.run()
    return {"SIGINT": 130, "SIGTERM": 143}.get(result["reason"], 0)


def _keys_generate(args: argparse.Namespace) -> int:
    import shutil

    from evo_rl.dist import keys

    folder = Path(args.dir)
    written = keys.generate(folder, ("server", "trainer", "worker"), overwrite=args.overwrite)
    allowed = folder / "allowed"
    allowed.mkdir(exist_ok=True)
    for role in ("trainer", "worker"):
        shutil.copy(folder / f"{role}.key", allowed / f"{role}.key")
    for path in written:
        print(path)
    print(f"allowed on the server: {', '.join(sorted(p.name for p in allowed.glob('*.key')))} in {allowed}")
    return 0
