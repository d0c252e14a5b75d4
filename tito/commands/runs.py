"""`tito runs [--dir runs] [list | show RUN | compare RUN RUN...]`: the run directories of module 15."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tito.command import Command
from tito.course import Course

DESCRIPTION = """\
Inspect the run directories written by tinytorch.mlops.mlops.Run (module 15): each holds
config.json, metrics.jsonl, checkpoints/ and plots/.

  list                 one line per run, oldest first: status, steps, config hash, final metrics
  show RUN             a run's configuration, environment, every logged line and its files
  compare RUN RUN...   the configuration keys that differ between the runs, and their final metrics

RUN is a folder name under --dir, a unique prefix of one, or a path to a run folder."""

_LIST_METRICS = 4  # final metrics shown per run by `list`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path("runs"), help="the folder holding the runs (default: runs)")
    parser.add_argument("action", nargs="?", default="list", choices=("list", "show", "compare"),
                        help="what to do (default: list)")
    parser.add_argument("runs", nargs="*", metavar="RUN", help="runs for show (one) and compare (two or more)")


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def list_table(runs: list[Any]) -> list[list[str]]:
    rows = [["run", "created", "status", "steps", "config_hash", "final metrics"]]
    for r in runs:
        final = {k: v for k, v in r.final_metrics().items() if k != "step" and isinstance(v, (int, float))}
        shown = ", ".join(f"{k}={_value(v)}" for k, v in list(final.items())[:_LIST_METRICS])
        rows.append([r.name, str(r.meta.get("created", "?")), r.status, str(len(r.metrics())),
                     r.config_hash[:12], shown])
    return rows


def show(run: Any) -> str:
    from tinytorch.mlops.mlops import format_table

    meta = run.meta
    lines = [f"run          {run.name}", f"folder       {run.path}", f"created      {meta.get('created')}",
             f"status       {run.status}", f"seed         {_value(meta.get('seed'))}",
             f"config_hash  {run.config_hash}", f"git commit   {_value(meta.get('git_commit'))}"]
    env = meta.get("environment") or {}
    lines.append("environment  " + ", ".join(f"{k} {v}" for k, v in env.items()))
    lines.append("config:")
    flat = _flatten(run.config)
    lines += [f"  {k} = {_value(v)}" for k, v in flat.items()] or ["  (empty)"]
    records = run.metrics()
    lines.append(f"metrics ({len(records)} lines of metrics.jsonl):")
    if records:
        keys: list[str] = []
        for rec in records:
            keys += [k for k in rec if k not in keys]
        table = [keys] + [[_value(rec.get(k)) for k in keys] for rec in records]
        lines += ["  " + line for line in format_table(table).splitlines()]
    for folder in (run.checkpoints, run.plots):
        files = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        lines.append(f"{folder.name}/: {', '.join(files) if files else '(empty)'}")
    return "\n".join(lines)


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run(args: argparse.Namespace, course: Course) -> int:
    from tinytorch.mlops.mlops import compare_runs, find_run, format_table, list_runs

    root: Path = args.dir
    try:
        if args.action == "list":
            if args.runs:
                print("tito runs: error: `list` takes no RUN arguments", file=sys.stderr)
                return 2
            runs = list_runs(root)
            if not runs:
                print(f"no runs in {root}" + ("" if root.is_dir() else " (the folder does not exist)"))
                return 0
            print(format_table(list_table(runs)))
        elif args.action == "show":
            if len(args.runs) != 1:
                print("tito runs: error: `show` takes exactly one RUN", file=sys.stderr)
                return 2
            print(show(find_run(args.runs[0], root)))
        else:
            if len(args.runs) < 2:
                print("tito runs: error: `compare` takes two or more RUNs", file=sys.stderr)
                return 2
            print(format_table(compare_runs([find_run(ref, root) for ref in args.runs])))
    except (ValueError, FileNotFoundError) as err:
        print(f"tito runs: error: {err}", file=sys.stderr)
        return 2
    return 0


COMMAND = Command(
    name="runs",
    help="list, show and compare training runs (module 15)",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
