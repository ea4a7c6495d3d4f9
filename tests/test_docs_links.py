"""Links that cannot rot: every repository path cited in code, configs and docs exists, every relative link and image
of the README and docs/ resolves, and nothing cites a README section title (the README is reorganised freely)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", ".git", "runs", "outputs", "data_cache", "lightning_logs", "__pycache__", ".pytest_cache"}
# A path into the repository: one of its top-level folders, then a file with an extension we ship.
CITED = re.compile(r"(?<![\w./-])((?:docs|configs|assets|bench|apps|models|data|utils|tests|training)/[\w./-]*?"
                   r"\.(?:md|yaml|py|png|sh|csv|json))(?![\w/])")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
README_SECTION = re.compile(r"README[,:]?\s+\"|README section")
#: Files moved since a frozen experiment page was written (docs/experiments/ is never rewritten): old -> new path.
MOVED = {"models/throughput.py": "training/throughput.py", "models/loss_watch.py": "training/loss_watch.py",
         "apps/cli.py": "training/cli.py", "apps/cli_parser.py": "training/cli_parser.py",
         "apps/cli_help.py": "training/cli_help.py", "models/colorizer.py": "models/diffusion.py",
         "models/samplers.py": "models/solvers.py", "data/sampler.py": "data/stream.py",
         "apps/colorize.py": "apps/colorize_jobs.py", "utils/folders.py": "utils/outputs.py"}


def _files(*patterns: str) -> list[Path]:
    found = []
    for pattern in patterns:
        for path in ROOT.glob(pattern):
            if path.is_file() and not SKIP_DIRS & set(path.relative_to(ROOT).parts):
                found.append(path)
    return sorted(set(found))


SOURCES = [p for p in _files("**/*.py", "**/*.yaml", "**/*.sh", "Makefile", "README.md", "docs/**/*.md")
           if p != Path(__file__).resolve()]  # this file's own examples are meant to be broken
MARKDOWN = _files("README.md", "docs/**/*.md")


def test_there_is_something_to_check():
    assert (ROOT / "README.md") in MARKDOWN and any(p.parts[-2] == "configs" for p in SOURCES)
    assert all((ROOT / new).exists() and not (ROOT / old).exists() for old, new in MOVED.items())


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_paths_exist(path):
    text = path.read_text(encoding="utf-8")
    frozen = path.parent == ROOT / "docs" / "experiments"
    missing = sorted({m for m in CITED.findall(text)
                      if not (ROOT / m).exists() and not (frozen and (ROOT / MOVED.get(m, m)).exists())})
    assert not missing, f"{path.relative_to(ROOT)} cites paths that do not exist: {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_readme_section_citations(path):
    if path.suffix == ".md":
        return
    hits = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if README_SECTION.search(line)]
    assert not hits, f"{path.relative_to(ROOT)} cites README sections (cite a docs/ page instead): {hits}"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_images_resolve(path):
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z+.-]*:", target) or target.startswith("#"):
            continue  # an address or an anchor in the same page
        file = target.split("#", 1)[0]
        if not (path.parent / file).exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)} links to missing files: {broken}"


def test_the_checks_catch_a_broken_link_and_a_missing_path(tmp_path):
    page = "see [the guide](docs/nowhere.md) and ![](figures/none.png); models/nothing_here.py"
    assert LINK.findall(page) == ["docs/nowhere.md", "figures/none.png"]
    assert CITED.findall(page) == ["docs/nowhere.md", "models/nothing_here.py"]
    assert README_SECTION.search('(README, "Sample quality")')
