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
COURSE = ROOT / "course"

c = get_config()  # noqa: F821 (defined by nbgrader's config loader)

c.CourseDirectory.course_id = "tinytorch"
c.CourseDirectory.root = str(COURSE)
c.CourseDirectory.source_directory = "source"          # written by tito from modules/
c.CourseDirectory.release_directory = "release"        # the student versions
c.CourseDirectory.submitted_directory = "submitted"    # <student>/<NN_name>/name_dev.ipynb
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = f"sqlite:///{COURSE / 'gradebook.db'}"
# Never copy the paired dev .py (it holds the solutions) or caches into a release.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py"]

# Autograding: seconds one cell may run, and seconds one notebook may run in all.
c.Execute.timeout = 120
c.GradingExecute.notebook_timeout = 600

# tito's additions to nbgrader's pipelines: stubs that name the module to finish
# (ClearSolutions.code_stub is "# YOUR CODE HERE" + "raise NotImplementedError()"), and
# the executor with the per-notebook limit. See tito/grading.py.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tito.grading import use_tito_preprocessors  # noqa: E402

use_tito_preprocessors(c)
