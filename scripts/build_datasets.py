"""Build saferl's DSRL-style datasets and regenerate the table of ``docs/benchmark_data.md``.

For each task named (default: every task with committed behaviour policies, in the order of the
recipes): optionally train its behaviour agents (``--train``, or automatically when its policy file is
missing and ``--train-missing`` is given), build its dataset into the DSRL cache
(``saferl.datasets.builders.build_dataset``: resumable, deterministic by ``--seed``), write its card to
``datasets/cards/<Task>.yaml`` and copy its scatter plot to ``docs/figures/data_<Task>.png``. Then the
per-task table and the list of plots of ``docs/benchmark_data.md`` (between its ``data-table`` and
``data-figures`` markers) are rewritten from every card, and the table is printed. Times come from the cards (collection, assembly) and from the policy
files (behaviour training), i.e. from what the builds measured.

    python scripts/build_datasets.py BallRun CarRun          # build (policies must exist)
    python scripts/build_datasets.py BallRun --train --force # retrain, rebuild
    python scripts/build_datasets.py --table-only            # only regenerate the table
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml

from saferl.datasets.builders import (
    RECIPES,
    behaviour_policy_path,
    build_dataset,
    print_iteration,
    train_behaviour_policies,
)
from saferl.datasets.builders.build import CARD_DIR

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmark_data.md"
FIGURES = REPO / "docs" / "figures"
TABLE_MARKERS = ("<!-- data-table:start -->", "<!-- data-table:end -->")
FIGURE_MARKERS = ("<!-- data-figures:start -->", "<!-- data-figures:end -->")


def _fmt_range(section: dict) -> str:
    return f"{section['min']:.1f} .. {section['max']:.1f} ({section['mean']:.1f})"


def table() -> str:
    """The per-task Markdown table from every card in ``datasets/cards`` (recipe order)."""
    header = (
        "| task | trajectories (DSRL) | transitions | reward return min .. max (mean) | DSRL R_min .. R_max "
        "| cost return min .. max (mean) | safe at kappa 10 / 20 / 40 | behaviour training | build |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for task in RECIPES:
        path = CARD_DIR / f"{task}.yaml"
        if not path.exists():
            continue
        card = yaml.safe_load(path.read_text())
        counts, timing, safe = card["counts"], card["timing_s"], card["safe_fraction"]
        build_s = timing["collection"] + timing["assembly"]
        rows.append(
            f"| {task} | {counts['trajectories']} ({counts['dsrl_trajectories']}) | {counts['transitions']:,} "
            f"| {_fmt_range(card['reward_return'])} | {card['dsrl_R_min']:g} .. {card['dsrl_R_max']:g} "
            f"| {_fmt_range(card['cost_return'])} "
            f"| {safe['10']:.0%} / {safe['20']:.0%} / {safe['40']:.0%} "
            f"| {timing['behaviour_training'] / 60:.1f} min | {build_s / 60:.1f} min |"
        )
    missing = [task for task in RECIPES if not (CARD_DIR / f"{task}.yaml").exists()]
    footer = [f"\nTasks with a recipe but no built dataset yet: {', '.join(missing)}."] if missing else []
    return "\n".join([header, *rows, *footer])


def figures() -> str:
    """Markdown image links of every task's scatter plot in ``docs/figures`` (recipe order)."""
    return "\n".join(
        f"![{task}](figures/data_{task}.png)" for task in RECIPES if (FIGURES / f"data_{task}.png").exists()
    )


def replace_between(doc: str, markers: tuple[str, str], text: str) -> str:
    """``doc`` with the text between the two markers replaced by ``text``."""
    start, end = markers
    if start not in doc or end not in doc:
        raise SystemExit(f"{DOC} lacks the markers {start} / {end}")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{text}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Build the tasks named, then regenerate the table; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="*", help="tasks to build (default: every task with committed policies)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even if the file exists")
    parser.add_argument("--train", action="store_true", help="(re)train the behaviour agents first")
    parser.add_argument("--train-missing", action="store_true", help="train the tasks without a policy file")
    parser.add_argument("--table-only", action="store_true", help="only regenerate the docs table")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train up to this many behaviour runs at once, one process and core each "
                             "(same snapshots as --jobs 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tasks = args.tasks or [t for t in RECIPES if behaviour_policy_path(t).exists()]
    unknown = [t for t in tasks if t not in RECIPES]
    if unknown:
        parser.error(f"no recipe for {unknown}; tasks with one: {', '.join(RECIPES)}")
    if not args.table_only:
        for task in tasks:
            if args.train or (args.train_missing and not behaviour_policy_path(task).exists()):
                started = time.perf_counter()
                train_behaviour_policies(task, log=lambda run, entry, task=task: print_iteration(task, run, entry),
                                         jobs=args.jobs)
                print(f"{task}: trained behaviour agents in {time.perf_counter() - started:.0f} s", flush=True)
            started = time.perf_counter()
            result = build_dataset(task, seed=args.seed, force=args.force)
            FIGURES.mkdir(parents=True, exist_ok=True)
            if result.figure_path.exists():
                shutil.copyfile(result.figure_path, FIGURES / f"data_{task}.png")
            state = "kept existing" if result.reused else f"built in {time.perf_counter() - started:.0f} s"
            counts = result.card.get("counts", {})
            print(f"{task}: {state}: {result.path} ({counts.get('trajectories')} trajectories, "
                  f"{counts.get('transitions')} transitions)", flush=True)
    text = table()
    doc = replace_between(DOC.read_text(), TABLE_MARKERS, text)
    DOC.write_text(replace_between(doc, FIGURE_MARKERS, figures()))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
