"""Run configs over seeds (and variants) as parallel processes, then write one report.

    python scripts/run_experiments.py --out runs/point_robot \\
        --run bc_all=configs/point_robot/bc_all.yaml \\
        --run bc_safe=configs/point_robot/bc_safe.yaml \\
        --run fisor=configs/point_robot/fisor.yaml \\
        --run fisor_reward_aware=configs/point_robot/fisor.yaml:algo.selection=reward_aware \\
        --seeds 0 1 2 --jobs 2

Each ``--run NAME=CONFIG[:key=value,key=value]`` is trained once per seed into ``OUT/NAME-seedS`` with
``torch_threads=1`` (processes side by side must not share cores). Finished runs are skipped, so an
interrupted sweep continues where it stopped. The report (``OUT/report.md``, ``OUT/report.csv``) has one
row per run and the mean +- std over seeds per variant, at every reported cost limit.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from saferl.report import COLUMNS, aggregate, aggregate_columns, collect, to_csv, to_markdown


def parse_run(text: str) -> tuple[str, str, list[str]]:
    """``NAME=CONFIG[:k=v,k=v]`` -> (name, config path, overrides)."""
    if "=" not in text:
        raise SystemExit(f"--run needs NAME=CONFIG[:key=value,...], got '{text}'")
    name, rest = text.split("=", 1)
    config, _, extra = rest.partition(":")
    return name, config, [item for item in extra.split(",") if item]


def main() -> None:
    """Run the sweep and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="NAME=CONFIG[:key=value,...]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="processes at a time (one core each)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", nargs="*", default=[], help="key=value overrides for every run")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for spec in args.run:
        name, config, overrides = parse_run(spec)
        for seed in args.seeds:
            run_dir = out / f"{name}-seed{seed}"
            cmd = [sys.executable, "-m", "saferl.cli", "train", config, *overrides, *args.set, f"seed={seed}",
                   f"out_dir={run_dir}", "torch_threads=1", "progress=false"]
            jobs.append((run_dir, cmd))

    def work(job: tuple[Path, list[str]]) -> tuple[Path, int, float]:
        run_dir, cmd = job
        if (run_dir / "final_metrics.json").exists():
            return run_dir, 0, 0.0
        resume = ["--resume"] if (run_dir / "checkpoint.pt").exists() else []
        start = time.perf_counter()
        log = (out / f"{run_dir.name}.log").open("w")
        code = subprocess.run(cmd + resume, stdout=log, stderr=subprocess.STDOUT).returncode
        return run_dir, code, time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for run_dir, code, seconds in pool.map(work, jobs):
            print(f"{run_dir.name}: {'ok' if code == 0 else f'FAILED ({code})'} in {seconds:.0f} s", flush=True)
    done = [run_dir for run_dir, _ in jobs if (run_dir / "final_metrics.json").exists()]
    rows = collect(done)
    summary = to_markdown(aggregate(rows), aggregate_columns())
    variants = "\n".join(f"- `{spec}`" for spec in args.run)
    (out / "report.md").write_text(
        f"# Experiment report\n\nCommand: `python {' '.join(sys.argv)}`\n\nVariants:\n{variants}\n\n"
        f"## Mean over seeds\n\n{summary}\n## Runs\n\n{to_markdown(rows, COLUMNS)}"
    )
    (out / "report.csv").write_text(to_csv(rows, COLUMNS))
    print(summary)
    print(f"written: {out / 'report.md'}")


if __name__ == "__main__":
    main()
