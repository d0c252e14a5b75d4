"""nbgrader's configuration for the TinyTorch course.

Read by tito (`tito release`, `tito grade`, `tito workspace`) and by `nbgrader ...` run from
this folder. Every module is an assignment named after its folder (`03_layers`). nbgrader
works under course/ (gitignored): outside modules/, so nbdev never exports its copies.
`tito release` writes the source notebooks (course/source/NN_name/name_dev.ipynb) from the
dev files before nbgrader runs; see docs/instructor_guide.md.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

c = get_config()  # noqa: F821 (defined by nbgrader's config loader)

# The settings live in one place, tito/grading.py (`default_config`), which student
# workspaces use too:
#   course id "tinytorch"; source/release/submitted/autograded/feedback folders under
#   course/; the gradebook course/gradebook.db; `*.py` ignored, so the paired dev .py (it
#   holds the solutions) never reaches a release; 120 s per cell and 600 s per notebook when
#   autograding; and tito's preprocessors: stubs that name the module to finish, and the
#   executor with the per-notebook limit.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tito.course import Course  # noqa: E402
from tito.grading import default_config  # noqa: E402

c.merge(default_config(Course(ROOT)))
