"""Profiles rewrite only their keys in params.yaml (comments kept) and match `dvc exp run -S`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from leve.errors import LeveError
from leve.pipeline.profiles import apply_profile, dvc_set_args, edit_yaml, load_profile

ROOT = Path(__file__).resolve().parents[2]


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


@pytest.mark.parametrize("name", ["thesis", "embedded", "thesis-code"])
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
    assert thesis.keys() == embedded.keys() == load_profile("thesis-code", ROOT / "profiles").keys()
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert {k: _get(shipped, k) for k in embedded} == embedded


def test_dvc_set_args_round_trip():
    args = dvc_set_args("thesis", ROOT / "profiles")
    assert args[::2] == ["-S"] * (len(args) // 2)
    pairs = dict(a.split("=", 1) for a in args[1::2])
    assert {k: yaml.safe_load(v) for k, v in pairs.items()} == load_profile("thesis", ROOT / "profiles")


def test_set_value_keeps_comment_and_refuses_sections_and_unknown_keys(tmp_path):
    text = "a:\n  b: 1      # note\n  c:\n    d: x\n"
    out, changed = edit_yaml(text, {"a.b": [1, 2]}, tmp_path)
    assert changed == ["a.b"] and out.splitlines()[1] == "  b: [1, 2] # note"
    assert edit_yaml(out, {"a.b": [1, 2]}, tmp_path) == (out, [])  # an equal value is no change
    with pytest.raises(LeveError, match="section"):
        edit_yaml(text, {"a.c": 3}, tmp_path)
    with pytest.raises(LeveError, match="no key 'a.z'"):
        edit_yaml(text, {"a.z": 3}, tmp_path)


def test_comments_survive_and_nested_keys_change(tmp_path):
    """A ruamel.yaml round trip: every comment (own-line and end-of-line) stays where it was; a key
    three levels deep changes; values read back as leve reads them (PyYAML, YAML 1.1)."""
    text = ("# top comment\n"
            "datasets: [synthetic]   # which datasets\n"
            "train:\n"
            "  # section comment\n"
            "  lr: 1.0e-3            # learning rate\n"
            "  weights: null         # none yet\n"
            "  schedule:\n"
            "    name: cosine        # step | cosine\n"
            "    gamma: 0.99\n")
    values = {"train.schedule.name": "step", "datasets": ["nyu", "kitti"], "train.weights": "yes",
              "train.lr": 1e20}
    out, changed = edit_yaml(text, values, tmp_path)
    assert changed == list(values)
    lines = out.splitlines()
    assert lines[0] == "# top comment" and lines[3] == "  # section comment"
    assert lines[1] == "datasets: [nyu, kitti]  # which datasets"
    assert lines[7] == "    name: step          # step | cosine" and lines[8] == "    gamma: 0.99"
    back = yaml.safe_load(out)
    assert back["train"]["schedule"] == {"name": "step", "gamma": 0.99}
    assert back["train"]["weights"] == "yes" and back["train"]["lr"] == 1e20  # quoted 'yes', 1.0e+20
    params = tmp_path / "params.yaml"
    params.write_text(text)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "p.yaml").write_text("train.schedule.name: step\n")
    assert apply_profile("p", params, tmp_path / "profiles") == ["train.schedule.name"]
    assert params.read_text() == text.replace("name: cosine  ", "name: step    ")
    assert not (tmp_path / "params.yaml.tmp").exists()


def test_cli_profile_print_and_unknown(run_cli):
    ok = run_cli("profile", "thesis", "--print")
    assert ok.code == 0 and ok.stdout.startswith("dvc exp run -S ") and "train.dataset=nyu" in ok.stdout
    bad = run_cli("profile", "nope", "--print")
    assert bad.code == 1 and "no such profile" in bad.stderr


def test_thesis_code_profile_is_the_thesis_profile_plus_the_code_choices():
    """thesis-code = thesis with the notebooks' choices; every other key equal (read from the files)."""
    thesis, code = load_profile("thesis", ROOT / "profiles"), load_profile("thesis-code", ROOT / "profiles")
    differ = {k for k in thesis if thesis[k] != code[k]}
    assert differ == {"train.val_every", "train.val_schedule", "train.kd.norm", "train.loss.ssim",
                      "train.loss.invalid", "train.schedule.name", "prepare.kitti.gt", "prepare.endoslam.depth",
                      "bench.model.protocol", "train.kd.batch_max_shift", "train.bn_after_validation",
                      "train.amp", "teacher.amp", "eval.rmse_log"}
    assert (code["train.val_every"], code["train.val_schedule"], code["train.kd.norm"]) == (1000, "thesis-code", "batch")
    assert (code["train.loss.ssim"], code["train.loss.invalid"], code["bench.model.protocol"]) == (
        "thesis-code", "zero-target", "thesis")
    # issue 27, D1-D3: BN frozen after a mid-epoch validation, fp32 student and teacher, the raw-min shift
    assert (code["train.bn_after_validation"], code["train.amp"], code["teacher.amp"], code["train.kd.batch_max_shift"]) == (
        "eval", "float32", "float32", "raw_min")


def test_thesis_code_profile_builds_the_configs_it_names(tmp_path):
    """The profile applied to params.yaml reads back as the train and teacher configs with the thesis code's
    choices (D1-D3), and the shipped params keep leve's defaults."""
    from leve.teacher import stage as teacher_stage
    from leve.train import stage as train_stage

    shipped = train_stage.config(params_file=ROOT / "params.yaml")
    assert (shipped.bn_after_validation, shipped.amp, shipped.kd.batch_max_shift) == ("train", "bfloat16", "clipped")
    assert teacher_stage.config("nyu", params_file=ROOT / "params.yaml").amp == "float16"
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    apply_profile("thesis-code", params, ROOT / "profiles")
    cfg = train_stage.config(params_file=params)
    assert (cfg.bn_after_validation, cfg.amp, cfg.kd.norm, cfg.kd.batch_max_shift) == ("eval", "float32", "batch", "raw_min")
    assert teacher_stage.config("nyu", params_file=params).amp == "float32"
