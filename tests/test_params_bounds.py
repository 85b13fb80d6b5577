"""Bounded parsers: YAML aliases refused in params and profiles (one line naming the file and the key,
at once and in little memory), and no error message that formats an unbounded value."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from leve.errors import MAX_MESSAGE, LeveError, shown
from leve.params import build_config, load_params, load_yaml
from tests.limits import REPO


def alias_bomb(levels: int = 9, width: int = 9) -> list[str]:
    """Anchors a0..a<levels>, each a list of ``width`` aliases of the one before: width**levels leaves."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return lines


def bomb_params(path: Path, key_yaml: str) -> Path:
    """params.yaml with the bomb's anchors under ``x`` and ``key_yaml`` (which names ``*a9``) after them."""
    path.write_text("x:\n" + "".join(f"  {line}\n" for line in alias_bomb()) + key_yaml)
    return path


@pytest.mark.parametrize(("key_yaml", "key"), [
    ("eval:\n  datasets:\n    synthetic:\n      crop: *a9\n", "x.a1[0]"),
    ("prepare:\n  nyu:\n    split_lists: [*a9]\n", "x.a1[0]"),
])
def test_an_alias_bomb_is_refused_at_its_first_alias(tmp_path, key_yaml, key):
    path = bomb_params(tmp_path / "params.yaml", key_yaml)
    with pytest.raises(LeveError) as err:
        load_params(path)
    assert str(err.value) == (f"{path}: {key}: YAML alias '*a0' (line 3) refused: aliases and merge keys are not "
                              "allowed in params files; write the value out")


def test_the_key_of_a_lone_alias_is_named(tmp_path):
    text = "base: &b {lr: 1}\ntrain:\n  optimizer:\n    - sgd\n    - *b\n"
    with pytest.raises(LeveError, match=r"^p\.yaml: train\.optimizer\[1\]: YAML alias '\*b' \(line 5\) refused"):
        load_yaml(text, "p.yaml")
    with pytest.raises(LeveError, match=r"^p\.yaml: train\.<<: YAML alias '\*b'"):
        load_yaml("base: &b {lr: 1}\ntrain:\n  <<: *b\n", "p.yaml")
    assert load_yaml("train: &t {lr: 1}\n", "p.yaml") == {"train": {"lr": 1}}  # an anchor alone is harmless


def test_the_cli_refuses_the_bomb_in_one_line_and_little_memory(tmp_path):
    """A real ``leve train`` under a 2 GB address-space limit (the bomb expanded holds 9**9 items)."""
    bomb_params(tmp_path / "params.yaml", "train:\n  epochs: *a9\n")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    done = subprocess.run([sys.executable, "-m", "leve", "train"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, preexec_fn=limit, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: params.yaml: x.a1[0]: YAML alias '*a0' (line 3) refused: aliases and merge keys are not allowed in "
        "params files; write the value out"]


def test_profiles_refuse_aliases(tmp_path):
    from leve.pipeline.profiles import apply_profile, load_profile

    (tmp_path / "bomb.yaml").write_text("\n".join(alias_bomb(3, 3)) + "\ntrain.epochs: *a3\n")
    with pytest.raises(LeveError, match=r"bomb\.yaml: a1\[0\]: YAML alias '\*a0' \(line 2\) refused"):
        load_profile("bomb", tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text("keep: &k 1\ntrain:\n  epochs: *k\n")
    (tmp_path / "ok.yaml").write_text("train.epochs: 3\n")
    with pytest.raises(LeveError, match=r"params\.yaml: train\.epochs: YAML alias '\*k'"):
        apply_profile("ok", params, tmp_path)
    assert params.read_text() == "keep: &k 1\ntrain:\n  epochs: *k\n"


def test_a_huge_value_is_cut_in_the_message():
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        epochs: int = 1
        name: str = "x"

    for values in ({"epochs": "9" * 5_000_000}, {"epochs": [[list(range(1000))] * 1000]}, {"n" * 100_000: 1}):
        with pytest.raises(LeveError) as err:
            build_config(Cfg, values, "train")
        assert len(str(err.value)) < 500 and "\n" not in str(err.value), str(err.value)[:600]


def test_shown_and_the_message_cap():
    assert shown("many") == "'many'" and shown("many", quote=False) == "many"
    assert shown("two\nlines", quote=False) == "'two\\nlines'"  # never a line break in a message
    long = shown("x" * 10_000)
    assert len(long) <= 200 and long.startswith("'xxx")
    nested: list = []
    for _ in range(10_000):
        nested = [nested]
    assert len(shown(nested)) <= 200  # no recursion into ten thousand levels
    message = str(LeveError("y" * 1_000_000))
    assert len(message) < MAX_MESSAGE + 50 and message.endswith("(1,000,000 characters in all)")
