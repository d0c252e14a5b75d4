"""The course: its module table (the one place it is written down) and where things live.

Everything else in tito (which notebook exports to which file, which tests belong to a
module, what `tito status` lists) is derived from `MODULES` below.
"""

from __future__ import annotations

import difflib

import os
from dataclasses import dataclass
from pathlib import Path

#: (number, directory name, export target) of every module of the course, in order.
_TABLE: tuple[tuple[int, str, str], ...] = (
    (1, "01_tensor", "core.tensor"),
    (2, "02_activations", "core.activations"),
    (3, "03_layers", "core.layers"),
    (4, "04_losses", "core.losses"),
    (5, "05_autograd", "core.autograd"),
    (6, "06_optimizers", "core.optimizers"),
    (7, "07_training", "core.training"),
    (8, "08_dataloader", "core.dataloader"),
    (9, "09_spatial", "core.spatial"),
    (10, "10_normalization", "core.normalization"),
    (11, "11_attention", "core.attention"),
    (12, "12_compression", "optim.compression"),
    (13, "13_kernels", "core.kernels"),
    (14, "14_benchmarking", "bench.benchmarking"),
    (15, "15_mlops", "mlops.mlops"),
    (16, "16_tinygpt", "tinygpt"),
)

LIB_NAME = "tinytorch"
MODULES_DIR = "modules"
TESTS_DIR = "tests"
SETTINGS_FILE = "settings.ini"
ROOT_ENV_VAR = "TITO_ROOT"


@dataclass(frozen=True)
class Module:
    """One course module, e.g. `Module(5, "05_autograd", "core.autograd")`."""

    number: int
    dirname: str
    target: str

    @property
    def name(self) -> str:
        """The module's short name: the directory name without its number (`autograd`)."""
        return self.dirname.split("_", 1)[1]

    @property
    def prefix(self) -> str:
        """The two-digit number that starts the directory name (`05`)."""
        return f"{self.number:02d}"

    @property
    def dev_stem(self) -> str:
        """File name of the dev file without its extension (`autograd_dev`)."""
        return f"{self.name}_dev"

    @property
    def generated_relpath(self) -> Path:
        """Path of the generated Python file, relative to the course root."""
        return Path(LIB_NAME, *self.target.split(".")).with_suffix(".py")

    @property
    def import_name(self) -> str:
        """Dotted import name of the generated module (`tinytorch.core.autograd`)."""
        return f"{LIB_NAME}.{self.target}"


MODULES: tuple[Module, ...] = tuple(Module(*row) for row in _TABLE)


class UnknownModuleError(ValueError):
    """Raised when a name given on the command line names no course module."""


def resolve_module(name: str) -> Module:
    """Find a course module by `05_autograd`, `05`, `5`, `autograd` or `modules/05_autograd`."""
    key = Path(name.strip()).name.lower()
    for module in MODULES:
        if key in (module.dirname, module.prefix, str(module.number), module.name):
            return module
    known = ", ".join(m.dirname for m in MODULES)
    names = [m.dirname for m in MODULES] + [m.name for m in MODULES]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = ""
    if close:
        match = next(m for m in MODULES if close[0] in (m.dirname, m.name))
        hint = f" (did you mean {match.dirname}?)"
    raise UnknownModuleError(f"no course module is called {name!r}{hint}; the modules are: {known}")


def module_by_number(number: int) -> Module:
    """The course module with this number."""
    for module in MODULES:
        if module.number == number:
            return module
    raise UnknownModuleError(f"no course module has number {number}")


def module_for_target(target: str) -> Module | None:
    """The course module that exports to `target` (`core.tensor`), if any."""
    for module in MODULES:
        if module.target == target:
            return module
    return None


@dataclass(frozen=True)
class Course:
    """A course checkout on disk: the repository root and the paths tito uses inside it."""

    root: Path

    @property
    def modules_dir(self) -> Path:
        return self.root / MODULES_DIR

    @property
    def lib_dir(self) -> Path:
        return self.root / LIB_NAME

    @property
    def tests_dir(self) -> Path:
        return self.root / TESTS_DIR

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE

    def module_dir(self, module: Module) -> Path:
        return self.modules_dir / module.dirname

    def dev_py(self, module: Module) -> Path:
        """The dev file, `modules/05_autograd/autograd_dev.py`: the source of truth."""
        return self.module_dir(module) / f"{module.dev_stem}.py"

    def dev_ipynb(self, module: Module) -> Path:
        """The notebook paired with the dev file (what nbdev exports from)."""
        return self.module_dir(module) / f"{module.dev_stem}.ipynb"

    def generated_file(self, module: Module) -> Path:
        return self.root / module.generated_relpath

    def exists(self, module: Module) -> bool:
        """A module exists once its dev `.py` file does; until then it is only planned."""
        return self.dev_py(module).is_file()

    def existing_modules(self) -> list[Module]:
        return [m for m in MODULES if self.exists(m)]

    def test_files(self, module: Module) -> list[Path]:
        """The pytest files of a module: `tests/test_NN_*.py`."""
        return sorted(self.tests_dir.glob(f"test_{module.prefix}_*.py"))

    def select(self, names: list[str] | None) -> list[Module]:
        """The modules named on the command line, or every existing module when none are.

        Raises UnknownModuleError for a name that is not a course module, or one whose dev
        file does not exist yet.
        """
        if not names:
            return self.existing_modules()
        selected: list[Module] = []
        for name in names:
            module = resolve_module(name)
            if not self.exists(module):
                raise UnknownModuleError(
                    f"module {module.dirname} is planned but not written yet "
                    f"({self.dev_py(module).relative_to(self.root)} does not exist)"
                )
            if module not in selected:
                selected.append(module)
        return sorted(selected, key=lambda m: m.number)


def default_root() -> Path:
    """The course root: $TITO_ROOT if set, else the checkout this `tito` package lives in."""
    env = os.environ.get(ROOT_ENV_VAR)
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent
