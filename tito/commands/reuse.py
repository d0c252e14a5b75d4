"""`tito reuse`: how much of TinyGPT (module 16) is built from modules 01-15, measured from the code."""

from __future__ import annotations

import argparse
import ast
import io
import json
import sys
import tempfile
import tokenize
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

from tito.command import Command
from tito.course import LIB_NAME, Course, Module, module_by_number, module_for_target

DESCRIPTION = """\
Measure how much of TinyGPT comes from earlier modules, three ways, from the code itself:

classes   Instantiate a default TinyGPT, walk its module tree, and attribute every module
          object (and the parameters it owns) to the course module that defines its class
          (cls.__module__, e.g. tinytorch.core.layers -> 03_layers).
graph     Run a forward pass, the loss and backward on a batch; attribute every Function
          node of the graph to the module that defines the op (its forward) and to the
          module that defines its backward rule (module 05 for the ops of 01-04).
lines     Trace (sys.settrace) a representative workload: train a small TinyGPT with the
          LanguageModelTrainer (AdamW, warm-up + cosine, clipping, evaluation, checkpoint),
          generate text with the KV cache past the context window and without the cache,
          save and load the model. A "code line" is a physical line of a generated file
          that holds code: not blank, not only a comment, not part of a docstring.
            executed lines: code lines of the statements that ran at least once;
            used-function lines: all code lines of every function or method of which at
              least one statement ran (the code a reader must understand);
          each counted in tinytorch/tinygpt.py (new, module 16) and in the files of
          modules 01-15 (reused). New code is also counted in full: every code line of
          tinytorch/tinygpt.py, run or not.
Reuse = reused / (reused + new) for each measure."""


# ---- attributing classes to course modules ------------------------------------------------------
def course_module_of(obj_module: str | None) -> Module | None:
    """The course module whose generated file defines `obj_module` ("tinytorch.core.layers")."""
    if not obj_module or not obj_module.startswith(LIB_NAME + "."):
        return None
    return module_for_target(obj_module[len(LIB_NAME) + 1:])


def _label(module: Module | None) -> str:
    return module.dirname if module is not None else "other"


# ---- counting code lines -----------------------------------------------------------------------
class SourceFile:
    """Code lines, statements and functions of one generated Python file."""

    def __init__(self, path: Path):
        self.path = path
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
        self.code_lines = self._code_lines(text) - self._docstring_lines(tree)
        self.stmt_lines: dict[int, set[int]] = {}           # first line of a statement -> its own lines
        self.functions: list[tuple[int, int, ast.AST]] = []  # (start, end, node), innermost found by size
        for node in ast.walk(tree):
            if isinstance(node, ast.stmt):
                body = getattr(node, "body", None)
                last = node.end_lineno or node.lineno
                if isinstance(body, list) and body and isinstance(body[0], ast.AST):
                    last = body[0].lineno - 1                   # a compound statement's own lines: its header
                self.stmt_lines.setdefault(node.lineno, set()).update(range(node.lineno, max(last, node.lineno) + 1))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions.append((node.lineno, node.end_lineno or node.lineno, node))
        self.functions.sort(key=lambda f: f[1] - f[0])      # smallest span first

    @staticmethod
    def _code_lines(text: str) -> set[int]:
        skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                tokenize.ENCODING, tokenize.ENDMARKER}
        lines: set[int] = set()
        for tok in tokenize.tokenize(io.BytesIO(text.encode("utf-8")).readline):
            if tok.type not in skip:
                lines.update(range(tok.start[0], tok.end[0] + 1))
        return lines

    @staticmethod
    def _docstring_lines(tree: ast.AST) -> set[int]:
        lines: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                        and isinstance(body[0].value.value, str):
                    lines.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
        return lines

    def innermost_function(self, line: int) -> tuple[int, int, ast.AST] | None:
        for start, end, node in self.functions:
            if start <= line <= end:
                return start, end, node
        return None

    def measure(self, executed: set[int]) -> dict[str, int]:
        """Code lines in all, of executed statements, and of the functions that ran."""
        ran: set[int] = set()
        used_spans: set[tuple[int, int]] = set()
        for line in executed:
            ran |= self.stmt_lines.get(line, set())
            found = self.innermost_function(line)
            if found is not None:
                used_spans.add((found[0], found[1]))
        in_used: set[int] = set()
        for start, end in used_spans:
            in_used.update(range(start, end + 1))
        return {"code_lines": len(self.code_lines), "executed_lines": len(ran & self.code_lines),
                "used_function_lines": len(in_used & self.code_lines), "functions_used": len(used_spans)}


# ---- tracing ----------------------------------------------------------------------------------------
def trace_lines(workload: Callable[[], Any], lib_dir: Path) -> dict[str, set[int]]:
    """(file -> line numbers) of every line of `lib_dir` that ran during `workload()`."""
    prefix = str(lib_dir.resolve())
    hits: dict[str, set[int]] = defaultdict(set)

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            hits[frame.f_code.co_filename].add(frame.f_lineno)
        return local

    def global_(frame: Any, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code.co_filename.startswith(prefix):
            hits[frame.f_code.co_filename].add(frame.f_lineno)
            return local
        return None

    previous = sys.gettrace()
    sys.settrace(global_)
    try:
        workload()
    finally:
        sys.settrace(previous)
    return hits


def _workload(tg: Any, np: Any, folder: Path) -> Callable[[], None]:
    """Train, generate and save/load a small TinyGPT: every feature of module 16 once."""
    words = np.array(["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis",
                      "nobler", "in", "mind", "suffer", "ROMEO", "JULIET", ":", ",", ".", "\n"])
    text = " ".join(np.random.default_rng(0).choice(words, size=600))

    def run() -> None:
        model = tg.TinyGPT(tokenizer=tg.CharTokenizer().fit(text), d_model=32, num_heads=4, num_layers=2,
                           max_length=16, dropout=0.1, rng=np.random.default_rng(0))
        trainer = tg.LanguageModelTrainer(model, text, iterations=4, eval_interval=2, batch_size=4, warmup=1,
                                          eval_batches=1, checkpoint_dir=folder / "checkpoints",
                                          progress=False, verbose=False)
        trainer.fit()
        trainer.evaluate("val")
        model.generate("to be", max_length=40, temperature=0.8, top_k=10, top_p=0.9, seed=0)
        model.generate("to be", max_length=20, temperature=0, use_cache=False)
        model.save(folder / "model.pkl")
        tg.TinyGPT.load(folder / "model.pkl")
    return run


# ---- the measurement --------------------------------------------------------------------------------
def measure(course: Course) -> dict[str, Any]:
    root = str(course.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    import numpy as np
    import tinytorch  # noqa: F401  (switches autograd on)
    import tinytorch.tinygpt as tg
    from tinytorch.core.tensor import Autograd, Function

    sixteen = module_by_number(16)

    # classes: the module tree of a default TinyGPT, and the parameters each class owns
    model = tg.TinyGPT(tokenizer=tg.CharTokenizer(), rng=np.random.default_rng(0))
    instances: Counter[str] = Counter()
    classes: dict[str, set[str]] = defaultdict(set)
    params: Counter[str] = Counter()
    for m in model.modules():
        where = _label(course_module_of(type(m).__module__))
        instances[where] += 1
        classes[where].add(type(m).__name__)
        for value in vars(m).values():
            if isinstance(value, tinytorch.core.layers.Parameter):
                params[where] += value.size

    # graph: the Function nodes of forward + loss + backward
    window = np.random.default_rng(1).integers(0, model.vocab_size, size=(2, model.max_length + 1))
    inputs, targets = tg.shift_targets(window)
    loss = tg.LanguageModelLoss()(model(inputs), targets)
    loss.backward()
    nodes: Counter[str] = Counter()
    op_types: dict[str, set[str]] = defaultdict(set)
    backward_of: Counter[str] = Counter()
    stack, seen = [loss], set()
    while stack:
        t = stack.pop()
        if id(t) in seen or t._ctx is None:
            continue
        seen.add(id(t))
        op = type(t._ctx)
        where = _label(course_module_of(op.__module__))
        nodes[where] += 1
        op_types[where].add(op.__name__)
        rule = Autograd.rules.get(op)
        backward_module = rule.__module__ if rule is not None else (
            op.__module__ if op.backward is not Function.backward else None)
        backward_of[_label(course_module_of(backward_module))] += 1
        stack.extend(t._ctx.inputs)

    # lines: trace the workload
    with tempfile.TemporaryDirectory() as tmp:
        hits = trace_lines(_workload(tg, np, Path(tmp)), course.lib_dir)
    per_module: dict[str, dict[str, int]] = {}
    for path in sorted(course.lib_dir.rglob("*.py")):
        dotted = ".".join(path.relative_to(course.root).with_suffix("").parts)
        module = course_module_of(dotted)
        if module is None:
            continue
        counts = SourceFile(path).measure(hits.get(str(path.resolve()), set()) | hits.get(str(path), set()))
        per_module[module.dirname] = counts

    def total(key: str, new: bool) -> int:
        return sum(c[key] for name, c in per_module.items() if (name == sixteen.dirname) == new)

    def share(old: float, new: float) -> float:
        return old / (old + new) if old + new else float("nan")

    lines = {key: {"reused": total(key, False), "new": total(key, True)}
             for key in ("executed_lines", "used_function_lines", "functions_used")}
    lines["new_code_lines_all"] = per_module.get(sixteen.dirname, {}).get("code_lines", 0)
    old_instances = sum(v for k, v in instances.items() if k != sixteen.dirname)
    old_params = sum(v for k, v in params.items() if k != sixteen.dirname)
    old_nodes = sum(v for k, v in nodes.items() if k != sixteen.dirname)
    return {
        "model": {"config": model.config.to_dict(), "parameters": model.num_parameters()},
        "classes": {"instances": dict(instances), "classes": {k: sorted(v) for k, v in classes.items()},
                    "parameters": dict(params)},
        "graph": {"nodes": dict(nodes), "op_types": {k: sorted(v) for k, v in op_types.items()},
                  "backward_defined_in": dict(backward_of)},
        "lines": {"per_module": per_module, **lines},
        "reuse": {
            "module_objects": share(old_instances, instances[sixteen.dirname]),
            "distinct_classes": share(sum(len(v) for k, v in classes.items() if k != sixteen.dirname),
                                      len(classes[sixteen.dirname])),
            "parameters": share(old_params, params[sixteen.dirname]),
            "graph_nodes": share(old_nodes, nodes[sixteen.dirname]),
            "executed_lines": share(lines["executed_lines"]["reused"], lines["executed_lines"]["new"]),
            "used_function_lines": share(lines["used_function_lines"]["reused"], lines["used_function_lines"]["new"]),
            "used_function_lines_vs_all_new": share(lines["used_function_lines"]["reused"], lines["new_code_lines_all"]),
        },
    }


def format_report(r: dict[str, Any]) -> str:
    out = [f"TinyGPT (default configuration, {r['model']['parameters']:,} parameters): what is reused from modules 01-15", ""]
    pct = lambda x: f"{100 * x:.1f}%"
    out.append("classes in the module tree (objects / parameters owned):")
    for name in sorted(r["classes"]["instances"]):
        out.append(f"  {name:18s} {r['classes']['instances'][name]:4d} objects {r['classes']['parameters'].get(name, 0):>9,} "
                   f"parameters  {', '.join(r['classes']['classes'][name])}")
    out += ["", "Function nodes of forward + loss + backward (op defined in / backward defined in):"]
    for name in sorted(set(r["graph"]["nodes"]) | set(r["graph"]["backward_defined_in"])):
        out.append(f"  {name:18s} {r['graph']['nodes'].get(name, 0):4d} nodes  {r['graph']['backward_defined_in'].get(name, 0):4d} "
                   f"backward rules   {', '.join(r['graph']['op_types'].get(name, []))}")
    out += ["", "code lines (traced workload: train, evaluate, checkpoint, generate, save/load):",
            f"  {'module':18s} {'in file':>8s} {'executed':>9s} {'in used functions':>18s}"]
    for name, c in sorted(r["lines"]["per_module"].items()):
        if c["executed_lines"] or name.startswith("16"):
            out.append(f"  {name:18s} {c['code_lines']:8d} {c['executed_lines']:9d} {c['used_function_lines']:18d}")
    lines = r["lines"]
    out.append(f"  {'reused (01-15)':18s} {'':8s} {lines['executed_lines']['reused']:9d} {lines['used_function_lines']['reused']:18d}")
    out.append(f"  {'new (16)':18s} {lines['new_code_lines_all']:8d} {lines['executed_lines']['new']:9d} {lines['used_function_lines']['new']:18d}")
    u = r["reuse"]
    out += ["", "reuse = reused / (reused + new):",
            f"  module objects in the model tree   {pct(u['module_objects'])}",
            f"  distinct classes in the tree        {pct(u['distinct_classes'])}",
            f"  parameters (by owning class)        {pct(u['parameters'])}",
            f"  graph nodes (ops)                   {pct(u['graph_nodes'])}",
            f"  executed code lines                 {pct(u['executed_lines'])}",
            f"  code lines of the functions used    {pct(u['used_function_lines'])}",
            f"  ... against all of tinygpt.py       {pct(u['used_function_lines_vs_all_new'])}",
            "", "The course says 'about 95%'; the figures above are what the code shows."]
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the measurements to PATH as JSON")


def run(args: argparse.Namespace, course: Course) -> int:
    if not course.generated_file(module_by_number(16)).exists():
        print("tito reuse: tinytorch/tinygpt.py does not exist yet; write module 16 and run `tito export`",
              file=sys.stderr)
        return 2
    report = measure(course)
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


COMMAND = Command(
    name="reuse",
    help="measure how much of TinyGPT is built from modules 01-15",
    description=DESCRIPTION,
    run=run,
    add_arguments=add_arguments,
)
