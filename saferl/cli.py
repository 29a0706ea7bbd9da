"""The ``saferl`` command line.

    saferl train CONFIG [key=value ...] [--resume]
    saferl eval RUN_DIR [--episodes N] [--cost-limits 10,20,40]
    saferl report RUN_DIR [RUN_DIR ...] [--out DIR]
    saferl data list | info TASK_OR_FILE | build TASK
    saferl config ALGORITHM
    saferl algorithms

Every expected failure (bad file, unknown key, missing simulator, ...) prints one line
``saferl: error: ...`` and exits with status 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Sequence

from saferl.checkpoint import CheckpointError
from saferl.config import ConfigError, RunConfig, algorithm_registry, default_config, describe, get_algorithm, to_yaml
from saferl.datasets import SaferlDataError
from saferl.report import ReportError


def _parse_limits(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"cost limits must be comma-separated numbers, got '{text}'") from None


def _cmd_train(args: argparse.Namespace) -> int:
    from saferl.config import load_config
    from saferl.trainer import train

    items = list(args.items)
    config_path = items.pop(0) if items and "=" not in items[0] else None
    config = load_config(config_path, items)
    result = train(config, resume=args.resume)
    assert result.final is not None
    _print_result(result.final.to_dict(), result.out_dir)
    return 0


def _print_result(metrics: dict, out_dir: Path) -> None:
    from saferl.report import collect, to_markdown

    print(f"\nrun folder: {out_dir}")
    print(f"mean return {metrics['mean_return']:.3f}, mean cost {metrics['mean_cost']:.3f} over {metrics['episodes']} episodes")
    rows = collect([out_dir], "final_metrics.json") if (out_dir / "final_metrics.json").exists() else []
    if rows:
        print(to_markdown(rows, ["cost_limit", "normalized_reward", "normalized_cost", "violation_rate", "safe"]))
    feasibility = json.loads((out_dir / "final_metrics.json").read_text()).get("feasibility") if rows else None
    if feasibility:
        print(f"learned feasible region vs the true one: IoU {feasibility['iou']:.3f} "
              f"(infeasible sets {feasibility['iou_infeasible']:.3f}) -> {out_dir / 'feasibility.png'}")


def _cmd_eval(args: argparse.Namespace) -> int:
    from saferl.constraints.certificates import safety_test
    from saferl.evaluation import evaluate
    from saferl.report import collect, to_markdown
    from saferl.trainer import CHECKPOINT_NAME, load_trained

    run_dir = Path(args.run_dir)
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", args.name):
        raise ConfigError(f"--name '{args.name}' must be letters, digits, '_', '-' or '.' (it names a file)")
    algorithm, config, step = load_trained(run_dir, device=args.device, overrides=args.overrides)
    if config.torch_threads > 0:  # the run's own setting (one thread when runs share cores)
        import torch

        torch.set_num_threads(config.torch_threads)
    limits = args.cost_limits or sorted({config.cost_limit, *config.report_cost_limits})
    result, _ = evaluate(algorithm.act, config.task, episodes=args.episodes, seed=args.seed, cost_limits=limits)
    from saferl.datasets import get_task

    cost_bound = get_task(config.task).episode_len * 1.0
    for kappa in limits:
        cert = safety_test(result.episode_costs, threshold=kappa, delta=args.delta, method=args.bound, cost_bound=cost_bound)
        result.certificates.append(cert.to_dict())
    payload = {"checkpoint": CHECKPOINT_NAME, "checkpoint_step": step, "selection": "last",
               "act_overrides": list(args.overrides), **result.to_dict()}
    name = f"eval_metrics_{args.name}.json" if args.name else "eval_metrics.json"
    out = run_dir / name
    tmp = out.with_name(f".{name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(out)
    print(to_markdown(collect([run_dir], name),
                      ["cost_limit", "return", "cost", "normalized_reward", "normalized_cost", "violation_rate", "safe"]))
    for cert in result.certificates:
        verdict = "PASS" if cert["passed"] else "FAIL (no solution found)"
        print(f"certificate kappa={cert['threshold']:g}: {cert['method']} upper bound {cert['upper_bound']:.3f} "
              f"at delta={cert['delta']:g} -> {verdict}")
    print(f"written: {out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from saferl.report import COLUMNS, aggregate, aggregate_columns, collect, to_csv, to_markdown

    rows = collect(args.run_dirs, args.metrics)
    table = to_markdown(rows, COLUMNS)
    summary = to_markdown(aggregate(rows), aggregate_columns())
    print(table)
    print("Mean over seeds:\n")
    print(summary)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text("# saferl report\n\n" + table + "\n## Mean over seeds\n\n" + summary)
        (out / "report.csv").write_text(to_csv(rows, COLUMNS))
        print(f"written: {out / 'report.md'}, {out / 'report.csv'}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from saferl.datasets.cli_support import data_build, data_info, data_list

    if args.data_command == "list":
        print(data_list())
    elif args.data_command == "info":
        print(data_info(args.target))
    elif args.data_command == "build":
        print(data_build(args.task, seed=args.seed, force=args.force))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from saferl.config import field_docs

    config = default_config(args.algorithm)
    docs = field_docs(get_algorithm(args.algorithm).config_class)
    print(f"# default config of {args.algorithm}; YAML files need only the keys they change\n")
    print(to_yaml(config))
    print(f"# algo.* fields of {args.algorithm}:")
    for name, doc in docs.items():
        print(f"#   {name}: {doc}")
    return 0


def _cmd_algorithms(args: argparse.Namespace) -> int:
    for name, cls in algorithm_registry().items():
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:<14} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``saferl`` command."""
    parser = argparse.ArgumentParser(prog="saferl", description="Safe offline reinforcement learning.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train an algorithm from a config file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train from a YAML config (only the keys that differ from the defaults) and key=value overrides.",
        epilog="run config fields:\n" + describe(RunConfig) + "\n\nalgorithm fields (algo.*): saferl config ALGORITHM",
    )
    train.add_argument("items", nargs="*", metavar="CONFIG|key=value", help="a YAML file, then key=value overrides")
    train.add_argument("--resume", action="store_true", help="continue the run in out_dir from its checkpoint")
    train.set_defaults(func=_cmd_train)

    ev = sub.add_parser(
        "eval", help="evaluate a trained run's last checkpoint",
        description="Evaluate a run's last checkpoint in the simulator. key=value overrides may change the fields an "
        "algorithm reads only when acting (e.g. FISOR's algo.selection=reward_aware); the result goes to "
        "RUN_DIR/eval_metrics.json, or eval_metrics_NAME.json with --name.",
    )
    ev.add_argument("run_dir")
    ev.add_argument("overrides", nargs="*", metavar="algo.FIELD=VALUE", help="act-time overrides")
    ev.add_argument("--name", default=None, help="write eval_metrics_NAME.json (keeps other evaluations)")
    ev.add_argument("--episodes", type=int, default=20)
    ev.add_argument("--cost-limits", type=_parse_limits, default=None, help="e.g. 10,20,40")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--delta", type=float, default=0.05, help="certificate confidence level delta")
    ev.add_argument("--bound", default="student_t", choices=["student_t", "hoeffding", "empirical_bernstein"],
                    help="upper confidence bound of the safety certificate")
    ev.set_defaults(func=_cmd_eval)

    rep = sub.add_parser("report", help="reward-cost tables (markdown and CSV) of finished runs")
    rep.add_argument("run_dirs", nargs="+")
    rep.add_argument("--out", default=None, help="folder to write report.md and report.csv into")
    rep.add_argument("--metrics", default="final_metrics.json", help="metrics file of each run (or eval_metrics.json)")
    rep.set_defaults(func=_cmd_report)

    data = sub.add_parser("data", help="datasets: list, info, build")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_sub.add_parser("list", help="one line per task id")
    info = data_sub.add_parser("info", help="statistics of a task's dataset or a file")
    info.add_argument("target", metavar="TASK_OR_FILE")
    build = data_sub.add_parser("build", help="build a task's dataset locally")
    build.add_argument("task")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--force", action="store_true", help="rebuild even if cached")
    data.set_defaults(func=_cmd_data)

    cfg = sub.add_parser("config", help="print an algorithm's default config with field docs")
    cfg.add_argument("algorithm")
    cfg.set_defaults(func=_cmd_config)

    algos = sub.add_parser("algorithms", help="list registered algorithms")
    algos.set_defaults(func=_cmd_algorithms)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``saferl`` console script."""
    args = build_parser().parse_args(argv)
    from saferl.trainer import RunFolderError

    try:
        return int(args.func(args) or 0)
    except (SaferlDataError, ConfigError, CheckpointError, ReportError, RunFolderError) as exc:
        print(f"saferl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("saferl: interrupted (the last checkpoint is intact; resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
