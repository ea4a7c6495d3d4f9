"""The house's layers run one way: utils/ <- data/, models/ <- apps/ and the entry scripts. Every import statement of
utils/, data/ and models/ is checked, the lazy ones inside functions included."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"utils": {"data", "models", "apps"}, "data": {"models", "apps"}, "models": {"data", "apps"}}
MAX_LINES = 400


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_the_wrong_way(package):
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in sorted((ROOT / package).rglob("*.py"))
             for line, name in imported_packages(path) if name in FORBIDDEN[package]]
    assert not wrong, wrong


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from models.unet import UNet\n    import data.folder\n")
    assert [name for _, name in imported_packages(module)] == ["models", "data"]


def test_no_source_file_is_over_400_lines():
    sources = [p for p in ROOT.rglob("*.py") if not {"tests", "bench", ".venv"} & set(p.relative_to(ROOT).parts)]
    long = [f"{p.relative_to(ROOT)}: {n}" for p in sources if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert sources and not long, long
