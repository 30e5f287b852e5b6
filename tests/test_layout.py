"""The tree shows the design: what the root holds, and imports that point one way."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HUB_FILES = ("configuration_mixingbuddy", "modeling_mixingbuddy", "processing_mixingbuddy", "vocabulary_mixingbuddy")
BOTTOM = ("mixingbuddy.hub", "mixingbuddy.files", "mixingbuddy.markdown")  # what dataset_builder may use of the package


def imported_modules(path: Path) -> set[str]:
    """Absolute names of what a file imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package if node.level else ""
            module = ".".join(filter(None, (base, node.module)))
            names.update(f"{module}.{alias.name}" for alias in node.names)
            names.add(module)
    return names


def sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_the_root_holds_what_the_project_card_names():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    top = {name.split("/")[0] for name in tracked if (REPO / name).exists()}
    expected = {*(f"{name}.py" for name in HUB_FILES), "train_sft.py", "pyproject.toml", "README.md", "Makefile",
                "dataset_builder", "mixingbuddy", "tests", "configs", "metrics", "bench", ".ci", ".gitignore",
                "app.py", "docs"}  # the web page (the Spaces convention) and the images the README shows
    assert top <= expected, top - expected


def sibling_fallback(node) -> bool:
    """`try: from .x import a` / `except ImportError: if __package__: raise; from x import a` for Hub files x: the
    sibling imports of a package (mixingbuddy.hub, transformers_modules.*) that also work from a plain folder."""
    if not (isinstance(node, ast.Try) and len(node.handlers) == 1 and not node.orelse and not node.finalbody):
        return False
    if not all(isinstance(n, ast.ImportFrom) and n.level == 1 and n.module in HUB_FILES for n in node.body):
        return False
    handler = node.handlers[0]
    relative = [ast.dump(ast.ImportFrom(n.module, n.names, 0)) for n in node.body]
    guard, *plain = handler.body
    return (isinstance(handler.type, ast.Name) and handler.type.id == "ImportError"
            and ast.unparse(guard) == "if __package__:\n    raise"
            and [ast.dump(n) for n in plain] == relative)


def test_hub_files_import_only_each_other_relatively():
    for name in HUB_FILES:
        tree = ast.parse((REPO / f"{name}.py").read_text())
        fallbacks = [node for node in ast.walk(tree) if sibling_fallback(node)]
        allowed = {id(n) for node in fallbacks for n in node.handlers[0].body[1:]}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.module in HUB_FILES, (name, node.module)
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in allowed:
                modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any(m.split(".")[0] in {"mixingbuddy", "dataset_builder", *HUB_FILES} for m in modules)
            # transformers' get_imports skips try blocks: only the sibling fallback may hide an import in one
            assert not isinstance(node, ast.Try) or node in fallbacks, f"{name} has a try block"


def test_dataset_builder_uses_only_the_bottom_of_the_package():
    for path in sources("dataset_builder"):
        used = {m for m in imported_modules(path) if m.startswith("mixingbuddy")}
        assert all(m.startswith(BOTTOM) for m in used), (path.name, used)


def test_the_bottom_of_the_package_stands_alone():
    for module in BOTTOM:
        path = REPO / (module.replace(".", "/") + ("/__init__.py" if module.endswith("hub") else ".py"))
        used = {m for m in imported_modules(path) if m.startswith(("mixingbuddy.", "dataset_builder"))}
        assert used <= {"mixingbuddy.__version__"}, path


@pytest.mark.slow
def test_evaluation_imports_neither_trl_nor_the_critique():
    script = ("import sys, mixingbuddy.evaluation.generation, mixingbuddy.evaluation.report\n"
              "print(sorted(m for m in sys.modules if m == 'trl' or m.startswith(('trl.', 'mixingbuddy.critique'))))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_every_name_the_package_exports_imports():
    script = "import mixingbuddy\nfor name in mixingbuddy.__all__:\n    getattr(mixingbuddy, name)\nprint('ok')"
    done = subprocess.run([sys.executable, "-c", script], cwd="/", capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
