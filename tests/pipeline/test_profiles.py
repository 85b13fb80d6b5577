"""Profiles rewrite only their keys in params.yaml (comments kept) and match `dvc exp run -S`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from leve.errors import LeveError
from leve.pipeline.profiles import apply_profile, dvc_set_args, load_profile, set_value

ROOT = Path(__file__).resolve().parents[2]


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


@pytest.mark.parametrize("name", ["thesis", "embedded"])
def test_apply_profile_sets_exactly_its_keys(tmp_path, name):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = yaml.safe_load(params.read_text())
    comments = [line for line in params.read_text().splitlines() if line.lstrip().startswith("#")]
    apply_profile(name, params, ROOT / "profiles")
    after = yaml.safe_load(params.read_text())
    profile = load_profile(name, ROOT / "profiles")
    for key, value in profile.items():
        assert _get(after, key) == value, key
    # everything else is untouched: restore the profile keys and compare whole trees
    for key in profile:
        *parents, leaf = key.split(".")
        node = after
        for part in parents:
            node = node[part]
        ref = before
        for part in parents:
            ref = ref[part]
        node[leaf] = ref[leaf]
    assert after == before
    assert comments == [line for line in params.read_text().splitlines() if line.lstrip().startswith("#")]


def test_profiles_cover_the_same_keys_and_embedded_is_what_params_ship():
    thesis, embedded = load_profile("thesis", ROOT / "profiles"), load_profile("embedded", ROOT / "profiles")
    assert thesis.keys() == embedded.keys()
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert {k: _get(shipped, k) for k in embedded} == embedded


def test_dvc_set_args_round_trip():
    args = dvc_set_args("thesis", ROOT / "profiles")
    assert args[::2] == ["-S"] * (len(args) // 2)
    pairs = dict(a.split("=", 1) for a in args[1::2])
    assert {k: yaml.safe_load(v) for k, v in pairs.items()} == load_profile("thesis", ROOT / "profiles")


def test_set_value_keeps_comment_and_refuses_sections_and_unknown_keys(tmp_path):
    lines = ["a:", "  b: 1      # note", "  c:", "    d: x"]
    assert set_value(lines, "a.b", [1, 2], tmp_path) and lines[1] == "  b: [1, 2] # note"
    with pytest.raises(LeveError, match="section"):
        set_value(lines, "a.c", 3, tmp_path)
    with pytest.raises(LeveError, match="no key 'a.z'"):
        set_value(lines, "a.z", 3, tmp_path)


def test_cli_profile_print_and_unknown(run_cli):
    ok = run_cli("profile", "thesis", "--print")
    assert ok.code == 0 and ok.stdout.startswith("dvc exp run -S ") and "train.dataset=nyu" in ok.stdout
    bad = run_cli("profile", "nope", "--print")
    assert bad.code == 1 and "no such profile" in bad.stderr
