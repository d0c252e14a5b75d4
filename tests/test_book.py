"""The course book really builds (Jupyter Book 1.x), one page per module: the student notebooks,
with the outputs and figures of a run of the reference notebooks.

`tito book` installs Jupyter Book into .venv-book/ on first use (from PyPI, about half a
minute), because it cannot share the development environment; later runs take seconds.
"""
import subprocess
import sys
from pathlib import Path

from tito.course import MODULES, Course

REPO = Path(__file__).resolve().parents[1]


def test_book_builds_with_a_page_per_module(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tito", "--root", str(REPO), "book", "--output", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").exists()
    course = Course(REPO)
    existing = [m for m in MODULES if course.exists(m)]
    assert len(existing) >= 5
    for module in existing:
        page = html / "student" / module.dirname / f"{course.dev_py(module).stem}.html"
        assert page.exists(), f"no book page for {module.dirname}"
        assert "_static/wrap.css" in page.read_text(encoding="utf-8"), "long code lines wrap (_static/wrap.css)"
        text = page.read_text(encoding="utf-8")
        assert "### BEGIN SOLUTION" not in text, "the book shows student notebooks"
        assert "cell_output" in text, f"{module.dirname}: the book shows the outputs of the reference run"
        assert module.name.split("_")[0].lower() in text.lower()
    for name in ("07_training", "11_attention", "14_benchmarking"):  # a loss curve, an attention map, the roofline
        page = next((html / "student" / name).glob("*.html")).read_text(encoding="utf-8")
        assert "<img" in page and ".png" in page, f"{name}: no figure in the book"
