"""`tito mutants [MODULE ...]`: prove the graded checks against wrong and hostile submissions."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tito.command import Command
from tito.course import Course
from tito.gitstate import git_state

DESCRIPTION = """\
Grade, for each module (every module when none is named), a set of submissions built
from its release and dev file, with `tito grade`'s own machinery (sandbox, harness, hidden
tests; no feedback), and check each score:

  perfect              the reference solution: full marks
  blank                the release untouched: 0
  stderr-and-warnings  correct, but prints to stderr and warns: full marks
  mutant-*             one subtle bug each (grading/mutants/NN_name.json): must lose points
  hostile-*            imports the reference, reads the instructor's files, IPython input
                       transformers, patched numpy or code objects, sys.exit / os._exit /
                       kill, an infinite loop, trace functions, edited or deleted test cells,
                       changed metadata: 0, or, on top of a mutant, no point its bug lost

With --record the table and every score go to results/grading_sweep.md and .json, with
the git commit. Exits 1 if any submission scored other than expected."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("modules", nargs="*", metavar="MODULE", help="modules to sweep (default: all)")
    parser.add_argument("--record", action="store_true", help="write results/grading_sweep.md and .json")
    parser.add_argument("--cell-timeout", type=int, default=120, metavar="SECONDS",
                        help="time limit for one cell (default 120; the submission that never returns "
                             "gets 5 s in all)")


def run(args: argparse.Namespace, course: Course) -> int:
    from tito.mutation import sweep_module, sweep_table

    started = time.perf_counter()
    state = git_state(course.root)  # the code that is about to be graded
    sweeps = []
    for module in course.select(args.modules):
        with tempfile.TemporaryDirectory(prefix="tito-mutants-") as work:
            sweep = sweep_module(course, module, Path(work), cell_timeout=args.cell_timeout)
        sweeps.append(sweep)
        caught, total = sweep.count("mutant-")
        hostile_ok, hostile = sweep.count("hostile-")
        print(f"{'PASS' if sweep.ok else 'FAIL'} {module.dirname}: {caught}/{total} mutants caught, "
              f"{hostile_ok}/{hostile} hostile submissions held ({sweep.seconds:.0f} s)", flush=True)
        for row in sweep.results:
            if row["problem"]:
                print(f"    {row['name']}: {row['problem']}", flush=True)
    table = sweep_table(sweeps)
    print(table)
    if args.record:
        results = course.root / "results"
        data = {"command": "tito mutants" + "".join(f" {m}" for m in args.modules), **state,
                "seconds": round(time.perf_counter() - started, 1),
                "modules": {s.module.dirname: {"max_score": s.max_score, "results": s.results} for s in sweeps}}
        (results / "grading_sweep.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        head = (f"# Grading sweep\n\nRecorded by `{data['command']}` at commit {state['commit']}"
                f"{' (with uncommitted changes)' if state['dirty'] else ''} in {data['seconds']:.0f} s. "
                "Every score, and why each submission is what it is, is in grading_sweep.json.\n\n")
        (results / "grading_sweep.md").write_text(head + table, encoding="utf-8")
        print(f"recorded: {results / 'grading_sweep.md'}")
    return 0 if all(s.ok for s in sweeps) else 1


COMMAND = Command(
    name="mutants",
    help="grade perfect, blank, subtly wrong and hostile submissions and check every score",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
