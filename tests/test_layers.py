"""The layers' rule that import-linter cannot see: package __init__ files do not re-export (so importing a
module runs only its own code, and dvc.yaml's derived deps are the code a stage runs), while the old
package-level spellings still work with a deprecation."""

from __future__ import annotations

import importlib

import pytest

from leve.closure import ROOT, code_closure

NO_REEXPORT = ["leve.store", "leve.models", "leve.teacher", "leve.teacher.cache", "leve.train", "leve.evaluation"]


@pytest.mark.parametrize("package", NO_REEXPORT)
def test_package_init_imports_nothing_of_leve(package):
    init = f"{package.replace('.', '/')}/__init__.py"
    assert [f for f in code_closure(package, ROOT) if not init.startswith(f.rpartition("/")[0] + "/")
            and f != "leve/__init__.py" and f != "leve/errors.py"] == []


def test_a_stage_module_does_not_pull_in_its_package_siblings():
    files = code_closure("leve.store.format", ROOT)
    assert "leve/store/reader.py" not in files and "leve/store/builder.py" not in files


@pytest.mark.parametrize(("package", "name", "module"), [
    ("leve.store", "open_store", "leve.store.reader"),
    ("leve.models", "create_model", "leve.models.registry"),
    ("leve.teacher", "build_teacher_cache", "leve.teacher.cache.build"),
    ("leve.train", "TrainConfig", "leve.train.config"),
    ("leve.evaluation", "get_protocol", "leve.evaluation.protocols"),
])
def test_old_package_level_names_still_work_with_a_deprecation(package, name, module):
    with pytest.warns(DeprecationWarning, match=f"import it from {module}"):
        old = getattr(importlib.import_module(package), name)
    assert old is getattr(importlib.import_module(module), name)


def test_unknown_package_attribute_is_still_an_attribute_error():
    import leve.store

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        leve.store.nothing  # noqa: B018
