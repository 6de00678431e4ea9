"""Documents that cannot drift: the files they name exist, and the names they rely on are real."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from launchers.handlers import HANDLERS
from workflows.firetasks import FIRETASKS

ROOT = Path(__file__).resolve().parents[1]
TOP = ("campaign", "workflows", "launchers", "mlff", "analysis", "records", "tests", "benchmarks", "examples",
       "slurm_templates", "docs", ".ci")
# A repository path: a top-level folder, then names; a <placeholder> or a glob marks a pattern, not a path.
PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w.+/-]*[\w/])(?![\w.+/<*{\[-])" % "|".join(re.escape(top) for top in TOP))
# What the campaigns and the GPU check write: named in the docs, absent from a clean clone.
WRITTEN = ("examples/quickstart-runs",)


def _docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return [doc for node in nodes if (doc := ast.get_docstring(node, clean=False))]


def _documents() -> list[tuple[str, str]]:
    """(where, text) of the README, the docs and every docstring of the repository's Python files."""
    texts = [("README.md", (ROOT / "README.md").read_text())]
    texts += [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "docs").rglob("*.md"))]
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in TOP:
            texts += [(str(relative), doc) for doc in _docstrings(path)]
    return texts


def test_every_repository_path_a_document_names_exists():
    named = {(where, match) for where, text in _documents() for match in PATH.findall(text)
}
    assert len(named) > 50  # the pattern finds the paths the documents name
    missing = sorted(f"{where}: {path}" for where, path in named
                     if not (ROOT / path.rstrip("/")).exists() and not path.startswith(WRITTEN))
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("handler", [h for h in HANDLERS if h.changes_input], ids=lambda h: h.__name__)
def test_every_input_a_handler_changes_is_a_field_of_its_stage_inputs(handler):
    for inputs in FIRETASKS[handler.stage].stage_of:
        assert handler.changes_input in inputs.model_fields, f"{handler.__name__}: {inputs.__name__}"
