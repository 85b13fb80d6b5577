"""The shared options' behaviour: old spellings still parse (one warning line each), ``-S`` is ``--set``,
``--dataset`` defaults to the params' ``train.dataset``, sizes are read height first."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from leve.cli.options import default_dataset, parse_size, rewrite_args
from leve.errors import LeveError


def test_an_old_spelling_becomes_the_new_one_with_one_warning(capsys: pytest.CaptureFixture[str]) -> None:
    args = rewrite_args(["--batch", "4", "--batch=2", "--models", "leve"], {"--batch": "--batch-size"}, None)
    assert args == ["--batch-size", "4", "--batch-size=2", "--models", "leve"]
    assert capsys.readouterr().err.splitlines() == ["warning: --batch is deprecated; use --batch-size"] * 2


def test_arguments_after_double_dash_are_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert rewrite_args(["--", "--batch", "4"], {"--batch": "--batch-size"}, None) == ["--", "--batch", "4"]
    assert capsys.readouterr().err == ""


def test_height_and_width_become_one_resolution(capsys: pytest.CaptureFixture[str]) -> None:
    assert rewrite_args(["--height", "48", "--width=64", "--steps", "1"], {}, (240, 320)) == \
        ["--steps", "1", "--resolution", "48x64"]
    assert rewrite_args(["--width", "64"], {}, (240, 320)) == ["--resolution", "240x64"]  # the other half: the default
    assert capsys.readouterr().err.count("deprecated; use --resolution HxW") == 3
    with pytest.raises(LeveError, match="exclude each other"):
        rewrite_args(["--height", "48", "--resolution", "48x64"], {}, (240, 320))
    assert rewrite_args(["--height", "48"], {}, None) == ["--height", "48"]  # a command without the alias


@pytest.mark.parametrize("text, size", [("240x320", (240, 320)), ("48×64", (48, 64)), ("7X9", (7, 9))])
def test_sizes_are_height_first(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["320", "0x5", "axb", "1x2x3", "-4x5"])
def test_a_bad_size_is_one_line(text: str) -> None:
    with pytest.raises(LeveError, match="--resolution"):
        parse_size(text)


def test_dataset_defaults_to_train_dataset(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"dataset": "mine"}}))
    assert default_dataset(params) == "mine"
    params.write_text(yaml.safe_dump({"eval": {}}))
    from leve.train.config import TrainConfig

    assert default_dataset(params) == TrainConfig.dataset  # no key: the code default, as train would use
    params.write_text(yaml.safe_dump({"train": {"dataset": [1]}}))
    with pytest.raises(LeveError, match="train.dataset must be a name"):
        default_dataset(params)


@pytest.mark.parametrize("args, message", [
    (["train", "-S", "colour=red"], "train: unknown parameter(s) colour"),
    (["eval", "-S", "colour=red"], "eval: unknown parameter(s) colour"),
    (["teacher-cache", "-S", "colour=red"], "teacher: unknown parameter(s) colour"),
    (["prepare", "synthetic", "-S", "colour=red"], "prepare.synthetic: unknown parameter(s) colour"),
    (["bench", "model", "-S", "colour=red"], "unknown parameter(s) colour"),
])
def test_short_set_reaches_the_commands_params_section(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    res = run_cli(*args)
    assert res.code == 1 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_dataset_option_default_is_read_from_the_params_file(run_cli, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """eval and teacher-cache without --dataset look for the store of train.dataset."""
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump({"train": {"dataset": "mine"}}))
    for args in (["eval", "--quiet"], ["teacher-cache", "--model", "tiny-random"]):
        res = run_cli(*args)
        assert res.code == 1 and "data/zarr/mine.zarr: no store here" in res.stderr, res.stderr


def test_old_spellings_still_work_end_to_end(run_cli, tmp_path: Path) -> None:
    """`weights list --dest` (now --out) lists the same folder, after one warning line."""
    new, old = run_cli("weights", "list", "--out", tmp_path), run_cli("weights", "list", "--dest", tmp_path)
    assert new.code == old.code == 0 and new.stdout == old.stdout
    assert old.stderr == "warning: --dest is deprecated; use --out\n" and new.stderr == ""
