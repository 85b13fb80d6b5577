"""Every command's ``--help`` against a committed snapshot, and the one grammar the help promises.

The commands are found by walking the click tree of ``leve.cli.app``, so a new command is covered (and
fails until its snapshot is committed). ``UPDATE_SNAPSHOTS=1 pytest tests/cli`` rewrites the files under
tests/cli/help/ and removes those of commands that are gone; review them with ``git diff``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import typer.main
import typer.rich_utils
from typer.testing import CliRunner

from leve.cli import app
from leve.cli.options import NO_PARAMS

HELP_DIR = Path(__file__).parent / "help"
WIDTH = 100
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
DYNAMIC = ("prepare", "mydata")  # `leve prepare NAME`: made on demand for a name declared in params

# Commands that read no section of the params file: their help says so, and they take no --params
# (an option that changed nothing would be a trap).
READS_NO_PARAMS = {
    "figures", "info", "preview", "predict", "export", "model-card", "demo", "pipeline-deps", "report", "tables",
    "verify", "experiments list", "experiments queue", "weights fetch", "weights list", "bench io", "bench gpu",
    "bench teacher", "bench train",
}
# ... of which these take --set/-S for something else than a params section.
SET_NOT_PARAMS = {
    "bench gpu": "a field of the benchmark's own plan",
    "experiments queue": "a full key passed on to `dvc exp run -S`",
}
# Takes --params but no --set: the params file is what it rewrites, and the profile is the change.
PARAMS_NO_SET = {"profile"}


def _walk(cmd: object, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], object]]:
    found = [(path, cmd)]
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(None):  # type: ignore[attr-defined]
            found += _walk(cmd.get_command(None, name), (*path, name))  # type: ignore[attr-defined]
    return found


def _commands() -> dict[tuple[str, ...], object]:
    root = typer.main.get_command(app)
    commands = dict(_walk(root, ()))
    commands[DYNAMIC] = root.get_command(None, "prepare").get_command(None, DYNAMIC[1])  # type: ignore[attr-defined]
    return commands


COMMANDS = _commands()
LEAVES = {" ".join(path): cmd for path, cmd in COMMANDS.items() if not hasattr(cmd, "list_commands")}


def _snapshot(path: tuple[str, ...]) -> Path:
    return HELP_DIR / (".".join(("leve", *path)) + ".txt")


@pytest.fixture
def plain_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich renders the help the same on every machine: a fixed width, no colour, no terminal."""
    for name in ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "TERMINAL_WIDTH", "LINES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", WIDTH)
    monkeypatch.setattr(typer.rich_utils, "FORCE_TERMINAL", False)
    monkeypatch.setattr(typer.rich_utils, "COLOR_SYSTEM", None)


def render_help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="leve", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines()) + "\n"


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p) or "leve")
def test_help_matches_its_snapshot(plain_help: None, path: tuple[str, ...]) -> None:
    text = render_help(path)
    assert "\x1b[" not in text, "colour codes in the help: the snapshot would depend on the terminal"
    file = _snapshot(path)
    if UPDATE:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text, encoding="utf-8")
    assert file.is_file(), f"no snapshot {file.name}: run UPDATE_SNAPSHOTS=1 pytest {Path(__file__).name}"
    assert text == file.read_text(encoding="utf-8"), f"`leve {' '.join(path)} --help` changed: UPDATE_SNAPSHOTS=1"


def test_every_snapshot_belongs_to_a_command() -> None:
    expected = {_snapshot(path).name for path in COMMANDS}
    stale = sorted(f for f in os.listdir(HELP_DIR) if f not in expected)
    if UPDATE:
        for name in stale:
            (HELP_DIR / name).unlink()
        stale = []
    assert not stale, f"snapshots of commands that are gone: {stale}"


def test_the_walk_finds_the_commands() -> None:
    """The walk reaches nested groups (a walk that found nothing would pass every other test)."""
    assert {"train", "eval", "bench model", "prepare folder", "weights fetch", "experiments queue"} <= set(LEAVES)
    assert len(LEAVES) >= 30


def _options(cmd: object) -> dict[str, object]:
    return {opt: p for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_every_command_takes_params_and_set_or_says_it_reads_none(name: str) -> None:
    opts = _options(LEAVES[name])
    help_text = " ".join((LEAVES[name].help or "").split())  # type: ignore[attr-defined]
    if name in READS_NO_PARAMS:
        assert NO_PARAMS in help_text and "--params" not in opts
        assert ("--set" in opts) == (name in SET_NOT_PARAMS)
    elif name in PARAMS_NO_SET:
        assert "--params" in opts and "--set" not in opts
    else:
        assert "--params" in opts and NO_PARAMS not in help_text
    if "--set" in opts:
        assert opts["--set"] is opts.get("-S"), f"{name}: --set without its alias -S"
        assert getattr(opts["--set"], "multiple", False), f"{name}: --set is not repeatable"


def test_the_lists_name_existing_commands() -> None:
    named = READS_NO_PARAMS | set(SET_NOT_PARAMS) | PARAMS_NO_SET
    assert named <= set(LEAVES), sorted(named - set(LEAVES))
    assert set(SET_NOT_PARAMS) <= READS_NO_PARAMS


def test_flags_render_as_flags_and_help_states_no_default_numbers(plain_help: None) -> None:
    """No option shows a type for a flag (``--version <bool>``), and no help string hard-codes a
    default ("default 8"): those come from params and are shown as (from params: section.key)."""
    for path in COMMANDS:
        text = render_help(path)
        assert "<bool>" not in text, f"leve {' '.join(path)}: a flag rendered with a type"
        for param in getattr(COMMANDS[path], "params", []):
            assert not re.search(r"\(default:? [-0-9.]+", param.help or ""), f"leve {' '.join(path)} {param.name}"


@pytest.mark.parametrize("name, key", [
    ("train", "train.batch_size"), ("teacher-cache", "teacher.device"), ("eval", "eval.checkpoint"),
    ("serve", "serve.port"), ("bench model", "bench.model.batch"), ("prepare endoslam", "prepare.endoslam.per_organ"),
])
def test_an_option_backed_by_params_names_its_key(name: str, key: str) -> None:
    helps = [p.help or "" for p in LEAVES[name].params]  # type: ignore[attr-defined]
    assert any(f"(from params: {key})" in h and not re.search(r"\d", h.replace(key, "")) for h in helps)


def test_shared_options_are_spelled_the_same_everywhere() -> None:
    """--dataset, --device, --batch-size, --out and --resolution have one spelling: the old ones are gone
    from every command's options (they still parse, as hidden deprecated aliases)."""
    old = {"--batch", "--dest", "--height", "--width", "--video-every"}
    for name, cmd in LEAVES.items():
        assert not old & set(_options(cmd)), f"{name}: {sorted(old & set(_options(cmd)))}"
    devices = {name: cmd for name, cmd in LEAVES.items() if "--device" in _options(cmd)}
    assert {"predict", "train", "eval", "teacher-cache", "serve", "bench model"} <= set(devices)
    for name, cmd in devices.items():  # auto where no params key gives the default
        default = _options(cmd)["--device"].default  # type: ignore[attr-defined]
        assert default in (None, "auto"), f"{name}: --device defaults to {default}"
