"""The check harness: runs a notebook's cells in a fresh interpreter and decides each check.

This file runs on its own (`python harness.py PROGRAM.json FD`), usually inside the grading
sandbox (tito/sandbox.py); it imports nothing from tito and nothing of the course. tito
writes PROGRAM.json: the notebook's code cells in order, each marked

    "code"      provided code (from the instructor's source, never from the submission)
    "solution"  the student's cell
    "test"      a check: its visible part, and its hidden part when grading

Every cell runs once, top to bottom, in one namespace, like a notebook, but in plain Python:
no IPython, so input transformers, magics and display hooks do not exist. A failing cell
does not stop the run. For each test cell the harness writes one JSON line to the file
descriptor FD: whether its visible part and its hidden part ran without an exception.
Output, warnings and anything written to stderr never decide a verdict.

What student code cannot reach (as far as one process allows):
* `numpy`, the builtins, `math` and `warnings` are captured before any student code runs.
  Each test cell sees a frozen copy of numpy's namespace (`np.allclose` is numpy's own, even
  if a solution cell replaced `numpy.allclose`), the captured builtins, and comparisons
  (`np.allclose`, `np.isclose`, `np.array_equal`, `np.testing.assert_*`) that are
  re-implemented here on numpy's C ufuncs and reject object arrays, so no Python code of the
  submission runs inside them.
* Before and after every test cell and around every comparison, the captured objects are
  checked: a replaced numpy or builtins function (or its code object), a replaced module in
  `sys.modules`, or a trace/profile function fails that check and every later one.
* Names that test cells and provided non-exported cells define are put back before each
  test cell, so a solution cell cannot swap a test helper.
* A cell that exits (`sys.exit`), raises `BaseException`, or runs past its time limit fails;
  `os._exit` or a crash ends the process, and tito fails every check without a verdict.
"""

from __future__ import annotations

import builtins
import io
import json
import math
import os
import signal
import sys
import time
import types
import warnings

import numpy

_MISSING = object()
#: Module attributes that numpy, the standard library or `warnings.catch_warnings` rebind
#: during ordinary use; they are not checked.
VOLATILE = {
    "warnings": {"filters", "showwarning", "_showwarnmsg", "_filters_version", "defaultaction",
                 "onceregistry", "_onceregistry", "_defaultaction"},
}
TRUSTED_MODULES = ("math", "warnings")
#: Names that test cells always see bound to the captured modules.
TRUSTED_NAMES = ("np", "numpy", "math", "warnings")


class Tampering(Exception):
    """Raised in place of a verdict when captured objects were changed."""


def _functions_of(value):
    if isinstance(value, types.FunctionType):
        yield value
    elif type(value).__name__ == "_ArrayFunctionDispatcher":
        inner = getattr(value, "_implementation", None)
        if isinstance(inner, types.FunctionType):
            yield inner


class Guard:
    """A snapshot of numpy, math, warnings and the builtins, taken before student code runs."""

    def __init__(self) -> None:
        self.modules = {
            name: (module, dict(vars(module)))
            for name, module in list(sys.modules.items())
            if module is not None and (name == "numpy" or name.startswith("numpy.") or name in TRUSTED_MODULES)
        }
        self.builtins = dict(vars(builtins))
        self.code = {}
        for _, namespace in self.modules.values():
            for value in namespace.values():
                for func in _functions_of(value):
                    self.code[id(func)] = (func, func.__code__, func.__defaults__, func.__kwdefaults__)
        self.tampered: str | None = None

    def problem(self) -> str | None:
        """What was changed since the snapshot (None when nothing was); sticky once found."""
        if self.tampered is None:
            self.tampered = self._find()
        return self.tampered

    def _find(self) -> str | None:
        if sys.gettrace() is not None or sys.getprofile() is not None:
            return "student code installed a trace or profile function"
        for name, (module, snapshot) in self.modules.items():
            if sys.modules.get(name) is not module:
                return f"sys.modules[{name!r}] was replaced"
            current = vars(module)
            volatile = VOLATILE.get(name, ())
            for key, value in snapshot.items():
                if key not in volatile and current.get(key, _MISSING) is not value:
                    return f"{name}.{key} was replaced"
        current = vars(builtins)
        for key, value in self.builtins.items():
            if current.get(key, _MISSING) is not value:
                return f"builtins.{key} was replaced"
        for func, code, defaults, kwdefaults in self.code.values():
            if func.__code__ is not code or func.__defaults__ is not defaults or func.__kwdefaults__ is not kwdefaults:
                return f"the code of {func.__module__}.{func.__qualname__} was replaced"
        return None

    def check(self) -> None:
        problem = self.problem()
        if problem:
            raise Tampering(f"tampering detected: {problem}")


# ----------------------------------------------------------------- trusted comparisons

_asarray = numpy.asarray
_ndarray = numpy.ndarray
_abs, _sub, _mul, _add = numpy.absolute, numpy.subtract, numpy.multiply, numpy.add
_le, _eq, _isnan, _isinf, _isfinite = numpy.less_equal, numpy.equal, numpy.isnan, numpy.isinf, numpy.isfinite
_logical_and, _logical_or, _broadcast_shapes = numpy.logical_and, numpy.logical_or, numpy.broadcast_shapes


def _plain(value, guard: Guard):
    """`value` as a base-class ndarray of numbers (object arrays are refused)."""
    if isinstance(value, _ndarray) and type(value) is not _ndarray:
        value = value.view(_ndarray)
    array = _asarray(value)
    guard.check()
    if array.dtype.kind == "O":
        raise AssertionError("comparison of an object array (not numbers)")
    return array


def _isclose(guard, a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    a, b = _plain(a, guard), _plain(b, guard)
    if a.dtype.kind == "b":
        a = a.astype(numpy.int8)
    if b.dtype.kind == "b":
        b = b.astype(numpy.int8)
    with numpy.errstate(invalid="ignore", over="ignore"):
        close = _le(_abs(_sub(a, b)), _add(atol, _mul(rtol, _abs(b))))
        both_inf = _logical_and(_logical_and(_isinf(a), _isinf(b)), _eq(a, b))
        close = _logical_or(_logical_and(close, _logical_and(_isfinite(a), _isfinite(b))), both_inf)
        if equal_nan:
            close = _logical_or(close, _logical_and(_isnan(a), _isnan(b)))
    return close


def _make_comparisons(guard: Guard) -> dict:
    def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
        return _isclose(guard, a, b, rtol, atol, equal_nan)

    def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
        return bool(_isclose(guard, a, b, rtol, atol, equal_nan).all())

    def array_equal(a1, a2, equal_nan=False):
        a, b = _plain(a1, guard), _plain(a2, guard)
        if a.shape != b.shape:
            return False
        same = _eq(a, b)
        if equal_nan:
            same = _logical_or(same, _logical_and(_isnan(a), _isnan(b)))
        return bool(same.all())

    def array_equiv(a1, a2):
        a, b = _plain(a1, guard), _plain(a2, guard)
        try:
            _broadcast_shapes(a.shape, b.shape)
        except ValueError:
            return False
        return bool(_eq(a, b).all())

    def assert_allclose(actual, desired, rtol=1e-07, atol=0, equal_nan=True, err_msg="", verbose=True, strict=False):
        a, b = _plain(actual, guard), _plain(desired, guard)
        if strict and (a.shape != b.shape or a.dtype != b.dtype):
            raise AssertionError(f"shapes or dtypes differ: {a.shape} {a.dtype} vs {b.shape} {b.dtype} {err_msg}")
        try:
            _broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise AssertionError(f"shapes {a.shape} and {b.shape} do not broadcast {err_msg}") from None
        if not _isclose(guard, a, b, rtol, atol, equal_nan).all():
            raise AssertionError(f"not close (rtol={rtol}, atol={atol}) {err_msg}")

    def assert_array_equal(actual, desired, err_msg="", verbose=True, strict=False):
        a, b = _plain(actual, guard), _plain(desired, guard)
        if strict and (a.shape != b.shape or a.dtype != b.dtype):
            raise AssertionError(f"shapes or dtypes differ {err_msg}")
        if a.shape != b.shape and not array_equiv(a, b):
            raise AssertionError(f"shapes {a.shape} and {b.shape} differ {err_msg}")
        if not array_equiv(a, b):
            raise AssertionError(f"arrays are not equal {err_msg}")

    def assert_array_almost_equal(actual, desired, decimal=6, err_msg="", verbose=True):
        if not _isclose(guard, actual, desired, 0.0, 1.5 * 10.0 ** (-decimal)).all():
            raise AssertionError(f"arrays are not almost equal to {decimal} decimals {err_msg}")

    def assert_equal(actual, desired, err_msg="", verbose=True):
        assert_array_equal(actual, desired, err_msg)

    testing = types.SimpleNamespace(
        assert_allclose=assert_allclose, assert_array_equal=assert_array_equal,
        assert_array_almost_equal=assert_array_almost_equal, assert_equal=assert_equal,
        assert_almost_equal=assert_array_almost_equal,
    )
    return {"isclose": isclose, "allclose": allclose, "array_equal": array_equal,
            "array_equiv": array_equiv, "testing": testing}


class FrozenNumpy(types.ModuleType):
    """What test cells call `np`: numpy's namespace as captured, with trusted comparisons."""

    def __init__(self, snapshot: dict, comparisons: dict) -> None:
        super().__init__("numpy", "numpy, as captured before any student code ran")
        self.__dict__.update({k: v for k, v in snapshot.items() if not k.startswith("__")})
        self.__dict__.update(comparisons)

    def __getattr__(self, name):  # lazily loaded numpy attributes (numpy.linalg, ...)
        return getattr(numpy, name)


# ------------------------------------------------------------------------ running cells


class CellTimeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise CellTimeout()


def _describe(exc: BaseException, source: str, code_name: str) -> str:
    if isinstance(exc, CellTimeout):
        return "TimeoutError: the cell ran past its time limit"
    if isinstance(exc, SystemExit):
        return "SystemExit: the code called sys.exit()"
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, AssertionError) and not str(exc):
        tb = exc.__traceback__
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == code_name:
                line = tb.tb_lineno
            tb = tb.tb_next
        if line is not None:
            lines = source.splitlines()
            if 0 < line <= len(lines):
                text += f" at `{lines[line - 1].strip()}`"
    return text[:2000]


def run_cell(source: str, ns: dict, name: str, timeout: float, guard: Guard | None = None) -> str:
    """Run one cell's source in `ns`; "" when it ran through, else the error in one line."""
    code_name = f"<cell {name}>"
    out, err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = io.StringIO()
    signal.setitimer(signal.ITIMER_REAL, max(timeout, 0.001))
    try:
        exec(compile(source, code_name, "exec"), ns)
        if guard is not None:
            guard.check()
        return ""
    except BaseException as exc:  # noqa: BLE001 (every failure of student code is a verdict)
        return _describe(exc, source, code_name)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdout, sys.stderr = out, err
        sys.settrace(None)
        sys.setprofile(None)


def main(argv: list[str]) -> int:
    program = json.loads(open(argv[1], encoding="utf-8").read())
    channel = os.fdopen(int(argv[2]), "w", buffering=1)

    def report(**record) -> None:
        channel.write(json.dumps(record) + "\n")
        channel.flush()

    warnings.simplefilter("default")
    guard = Guard()
    comparisons = _make_comparisons(guard)
    signal.signal(signal.SIGALRM, _on_alarm)
    timeout = float(program.get("cell_timeout", 120))
    ns: dict = {"__name__": "__main__", "__builtins__": builtins,
                "display": lambda *args, **kwargs: None}
    helpers: dict = {}  # names that test cells and provided, non-exported cells define
    report(event="start", cells=len(program["cells"]))
    for index, cell in enumerate(program["cells"]):
        kind, name = cell["kind"], cell.get("name") or f"cell {index + 1}"
        report(event="cell", index=index, name=name)
        if kind != "test":
            before = dict(ns)
            ns["__builtins__"] = builtins
            error = run_cell(cell["source"], ns, name, timeout)
            if kind == "code" and not cell.get("exported"):
                helpers.update({k: v for k, v in ns.items()
                                if not k.startswith("__") and before.get(k, _MISSING) is not v})
            report(event="ran", index=index, name=name, error=error)
            continue
        parts = {}
        before_cell = dict(ns)
        for part in ("visible", "hidden"):
            source = cell.get(part)
            if source is None:
                continue
            started = time.perf_counter()
            problem = guard.problem()
            if problem:
                parts[part] = {"ok": False, "error": f"tampering detected: {problem}", "seconds": 0.0}
                continue
            frozen_np = FrozenNumpy(guard.modules["numpy"][1], comparisons)  # new each time: nothing carries over
            trusted = {"np": frozen_np, "numpy": frozen_np, "math": math, "warnings": warnings,
                       "__builtins__": dict(guard.builtins)}
            if part == "visible":  # the hidden part continues from its visible part
                ns.update(helpers)
            ns.update(trusted)
            error = run_cell(source, ns, f"{name} ({part})", timeout, guard)
            problem = guard.problem()
            if problem and not error:
                error = f"tampering detected: {problem}"
            parts[part] = {"ok": not error, "error": error, "seconds": round(time.perf_counter() - started, 3)}
        helpers.update({k: v for k, v in ns.items() if not k.startswith("__") and k not in TRUSTED_NAMES
                        and before_cell.get(k, _MISSING) is not v})
        for key in (*TRUSTED_NAMES, "__builtins__"):  # student code after this sees its own bindings again
            if key in before_cell:
                ns[key] = before_cell[key]
            else:
                ns.pop(key, None)
        report(event="check", index=index, name=name, **parts)
    report(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
