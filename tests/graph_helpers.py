"""Helpers shared by the test files (not a test module itself): float64 leaf tensors, the
gradient-check harness, and walks over recorded graphs.

A gradcheck case is a function of no arguments that returns `(func, inputs)`: `func(*inputs)`
builds a graph, and every input that requires grad is checked by module 05's `gradcheck`
(backward() against float64 central differences). Each test file from module 05 on keeps its
cases in a dict named `GRADCHECK_CASES` (name -> case) and runs them all with

    test_gradcheck = gradcheck_test(GRADCHECK_CASES)

tests/test_05_gradcheck.py gathers every file's dict (`all_gradcheck_cases`) and fails when a
differentiable op of the package is in no case.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pytest

from tinytorch.core.tensor import Tensor

#: a case: () -> (func, inputs)
Case = Callable[[], tuple[Callable[..., Tensor], Sequence[Tensor]]]


def t64(*shape: int, seed: int = 0, loc: float = 0.0, scale: float = 1.0, positive: bool = False,
        away_from_zero: bool = False) -> Tensor:
    """A float64 leaf tensor that requires grad, with reproducible normal values: mean `loc`,
    standard deviation `scale`; `positive`: |x| + 0.5 (for log, sqrt, divisors);
    `away_from_zero`: |x| >= 0.1 (keeps relu, max and abs away from their kinks)."""
    data = np.random.default_rng(seed).standard_normal(shape) * scale + loc
    if positive:
        data = np.abs(data) + 0.5
    if away_from_zero:
        data = np.sign(data) * (np.abs(data) + 0.1)
    return Tensor(data, dtype=np.float64, requires_grad=True)


def check_case(case: Case) -> None:
    """Build the case and gradcheck it: every input that requires grad must be float64, and at
    least one must (a case that checks nothing fails)."""
    from tinytorch.core.autograd import gradcheck  # module 05
    func, inputs = case()
    checked = [k for k, x in enumerate(inputs) if x.requires_grad]
    assert checked, "the case checks nothing: none of its inputs requires grad"
    wrong = [f"input {k}: {inputs[k].dtype}" for k in checked if inputs[k].dtype != np.float64]
    assert not wrong, f"central differences need float64 inputs ({', '.join(wrong)})"
    assert gradcheck(func, inputs)


def gradcheck_test(cases: dict[str, Case]) -> Callable[[str], None]:
    """A pytest test, parametrised by case name, that runs `check_case` on each of `cases`.
    Bind it to a `test_` name in the test file: `test_gradcheck = gradcheck_test(GRADCHECK_CASES)`."""
    @pytest.mark.parametrize("name", sorted(cases))
    def test_gradcheck(name: str) -> None:
        check_case(cases[name])
    return test_gradcheck


def all_gradcheck_cases(tests_dir: Path) -> dict[str, Case]:
    """The `GRADCHECK_CASES` of every test_*.py file in `tests_dir` that has them, named
    "<file stem>:<case>" (each file is loaded afresh, under a module name of its own)."""
    cases: dict[str, Case] = {}
    for path in sorted(tests_dir.glob("test_*.py")):
        if "GRADCHECK_CASES" not in path.read_text(encoding="utf-8"):
            continue
        spec = importlib.util.spec_from_file_location(f"_gradcheck_cases_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cases.update({f"{path.stem}:{k}": v for k, v in getattr(module, "GRADCHECK_CASES", {}).items()})
    return cases


def ops_in_graph(root: Tensor) -> set[type]:
    """The Function types recorded in the graph below the tensor `root` (iterative walk)."""
    ops: set[type] = set()
    stack: list[Any] = [root]
    visited: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in visited or node._ctx is None:
            continue
        visited.add(id(node))
        ops.add(type(node._ctx))
        stack.extend(node._ctx.inputs)
    return ops


def ops_in_cases(cases: dict[str, Case]) -> set[type]:
    """The Function types used by a dict of gradcheck cases (name -> () -> (func, inputs))."""
    ops: set[type] = set()
    for build in cases.values():
        func, inputs = build()
        ops |= ops_in_graph(func(*inputs))
    return ops
