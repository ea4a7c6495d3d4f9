"""The house's layers run one way: utils/ <- data/, models/ <- training/ <- apps/ and the entry scripts. Every import
statement of utils/, data/, models/ and training/ is checked, the lazy ones inside functions included. models/ is
plain PyTorch plus the LightningModules: no callback, CLI or checkpoint writer. No two modules share a name stem."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"utils": {"data", "models", "training", "apps"}, "data": {"models", "training", "apps"},
             "models": {"data", "training", "apps"}, "training": {"apps"}}
#: What only training needs, which models/ may not import: Lightning's callbacks, its CLI, its checkpoint writers.
TRAINING_ONLY = ("pytorch_lightning.callbacks", "pytorch_lightning.cli", "pytorch_lightning.plugins.io",
                 "lightning.pytorch.callbacks", "lightning.pytorch.cli", "lightning.pytorch.plugins.io", "jsonargparse")
MAX_LINES = 400


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every absolute import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the file."""
    return [(line, name.split(".")[0]) for line, name in imported_modules(path)]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_the_wrong_way(package):
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in sorted((ROOT / package).rglob("*.py"))
             for line, name in imported_packages(path) if name in FORBIDDEN[package]]
    assert not wrong, wrong


def test_models_hold_no_callback_cli_or_checkpoint_writer():
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in sorted((ROOT / "models").rglob("*.py"))
             for line, name in imported_modules(path) if name.startswith(TRAINING_ONLY)]
    callbacks = [f"{path.relative_to(ROOT)}:{node.lineno} class {node.name}"
                 for path in sorted((ROOT / "models").rglob("*.py"))
                 for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)
                 and any("Callback" in ast.unparse(base) or "CheckpointIO" in ast.unparse(base) for base in node.bases)]
    assert not wrong and not callbacks, wrong + callbacks


def stem(name: str) -> str:
    """A module name's stem: without a plural s, then without -ing or -er (sampler, samplers, sampling -> sampl)."""
    name = name.lower().removesuffix("s")
    for suffix in ("ing", "er"):
        if name.endswith(suffix) and len(name) > len(suffix) + 2:
            return name[: -len(suffix)]
    return name


def test_no_two_modules_share_a_stem():
    modules = [p for p in ROOT.rglob("*.py") if not {"tests", ".venv"} & set(p.relative_to(ROOT).parts)
               and p.name != "__init__.py"]
    by_stem: dict[str, list[str]] = {}
    for path in modules:
        by_stem.setdefault(stem(path.stem), []).append(str(path.relative_to(ROOT)))
    shared = {key: paths for key, paths in by_stem.items() if len(paths) > 1}
    assert len(modules) > 50 and not shared, shared
    assert stem("sampler") == stem("samplers") == stem("sampling") and stem("colorize") != stem("colorizer")


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from models.unet import UNet\n    import data.folder\n")
    assert [name for _, name in imported_packages(module)] == ["models", "data"]


def test_no_source_file_is_over_400_lines():
    sources = [p for p in ROOT.rglob("*.py") if not {"tests", "bench", ".venv"} & set(p.relative_to(ROOT).parts)]
    long = [f"{p.relative_to(ROOT)}: {n}" for p in sources if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert sources and not long, long
