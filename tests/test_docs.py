"""The docs: every generated table equals what ``docs/generate.py`` makes from its committed artifact,
and the README stays a short first page whose links resolve.

The strict site build (broken links and anchors between pages) is ``mkdocs build --strict`` in
``make test``; here are the checks mkdocs cannot make.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_generated_table_matches_its_artifact(generate: ModuleType) -> None:
    stale = [str(p.relative_to(ROOT)) for p in generate.stale()]
    assert not stale, f"{stale}: a generated table differs from its artifact; run python docs/generate.py"


def test_every_table_is_used_on_some_page(generate: ModuleType) -> None:
    used = {m["name"] for p in generate.pages() for m in generate.BLOCK.finditer(p.read_text())}
    assert used == set(generate.TABLES)


def test_a_changed_number_is_caught_and_restored(generate: ModuleType) -> None:
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    data = json.loads((ROOT / "docs" / "bench_io.json").read_text())
    speedup = f"{data['readers']['store_raw']['speedup_single']:.2f}×"
    assert speedup in page
    damaged = page.replace(speedup, "9.99×")
    assert damaged != page
    assert generate.render(damaged) == page


def test_bench_io_figures_are_the_json_s(generate: ModuleType) -> None:
    """Independent of the generator's formatting code: each reader's row carries its rounded JSON values."""
    page = (ROOT / "docs" / "datasets.md").read_text()
    data = json.loads((ROOT / "docs" / "bench_io.json").read_text())
    rows = {line for line in page.splitlines() if line.startswith("| ")}
    for reader in data["readers"].values():
        expected = [f"{reader['bytes_per_sample'] / 1000:.1f} kB", f"{round(reader['single_process_samples_per_s']):,}",
                    f"{reader['speedup_single']:.2f}×", f"{reader['bytes_ratio']:.2f}×"]
        assert any(all(f"| {e} |" in row for e in expected) for row in rows), expected


def test_eval_table_is_the_metrics_json(generate: ModuleType) -> None:
    page = (ROOT / "docs" / "getting-started.md").read_text()
    data = json.loads((ROOT / "metrics" / "synthetic.json").read_text())
    for model in ("student", "teacher"):
        m = data[model]
        assert f"| {m['rmse']:.3f} | {m['abs_rel']:.3f} | {m['d1']:.3f} |" in page


def test_an_unknown_table_name_is_refused(generate: ModuleType) -> None:
    with pytest.raises(SystemExit, match="unknown generated table 'nope'"):
        generate.render("<!-- generated:nope -->\n<!-- /generated -->\n")


def test_readme_is_a_short_first_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    first_screen = "\n".join(lines[:40])
    for step in ("make setup", "source .venv/bin/activate", "make demo", "leve predict"):
        assert step in first_screen, step


def test_readme_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert links
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert not missing, missing


def test_readme_demo_checkpoint_is_where_the_demo_writes_it() -> None:
    """The README's third command reads the demo's best.pt: the Makefile's demo folder, the train stage's output."""
    readme = (ROOT / "README.md").read_text()
    demo_dir = re.search(r"^DEMO_DIR \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert demo_dir is not None
    assert "- models/student" in (ROOT / "dvc.yaml").read_text()  # the train stage's output folder
    assert f"--checkpoint {demo_dir[1]}/models/student/best.pt" in readme
