"""The command line's one grammar: the options many commands share are written here once (spelling,
help and default), and so are the command classes that render flags as flags and keep old spellings
working.

The rules every command follows:

- ``--params FILE`` and ``--set key=value`` (``-S``, repeatable) on every command that reads a section
  of the params file; a command that reads none says so in its help ("Reads no params file", :func:`command`).
- An option that a params key backs defaults to that key: its help says ``(from params: section.key)``
  and states no number, so the help never disagrees with params.yaml.
- ``--dataset``, ``--device``, ``--batch-size``, ``--out`` and ``--resolution HxW`` mean the same
  everywhere; sizes are written height first (``HxW``) in options and messages alike.
- A renamed option keeps working, hidden from the help, and prints one line
  ``warning: --old is deprecated; use --new`` (:func:`command`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

from leve.errors import LeveError, shown
from leve.params import PARAMS_FILE, load_params, section

NO_PARAMS = "Reads no params file"  # how the help of a command that reads none ends (LeveCommand)


def from_params(key: str) -> str:
    """The help suffix of an option that defaults to a params key."""
    return f"(from params: {key})"


def params_option(section_name: str) -> Any:
    """``--params FILE``: the file whose ``section_name`` the command reads."""
    return typer.Option(PARAMS_FILE, "--params", help=f"Params file (the command reads its section {section_name}).")


def set_option(section_name: str) -> Any:
    """``--set key=value`` / ``-S key=value``: override a key of ``section_name`` (repeatable)."""
    return typer.Option([], "--set", "-S", metavar="KEY=VALUE",
                        help=f"Override a key of params section {section_name} (repeatable; a.b=v for a nested key).")


def device_option(key: str | None, choices: str = "auto | cpu | cuda | cuda:N") -> Any:
    """``--device``: from params ``key``, or ``auto`` for a command that reads no params."""
    if key is None:
        return typer.Option("auto", "--device", help=f"{choices} (auto: CUDA when torch sees a GPU, else the CPU).")
    return typer.Option(None, "--device", show_default=False, help=f"{choices} {from_params(key)}.")


def batch_size_option(key: str | None, what: str = "Images per forward pass", default: int | None = None) -> Any:
    """``--batch-size``: from params ``key``, or ``default`` for a command that reads no params."""
    if key is None:
        return typer.Option(default, "--batch-size", help=f"{what}.")
    return typer.Option(None, "--batch-size", show_default=False, help=f"{what} {from_params(key)}.")


def resolution_option(what: str, key: str | None = None, default: str | None = None) -> Any:
    """``--resolution HxW`` (height first): from params ``key``, or ``default``."""
    suffix = f" {from_params(key)}" if key else ""
    return typer.Option(default, "--resolution", metavar="HxW", show_default=default is not None,
                        help=f"{what}: HxW, height x width{suffix}.")


def dataset_option(what: str) -> Any:
    """``--dataset``: every command's default is the params' ``train.dataset`` (:func:`default_dataset`)."""
    return typer.Option(None, "--dataset", show_default=False,
                        help=f"{what}: the store data/zarr/<dataset>.zarr {from_params('train.dataset')}.")


def default_dataset(params_file: Path) -> str:
    """The one rule for ``--dataset``'s default: the params' ``train.dataset`` (else the code default)."""
    value = section(load_params(params_file), "train").get("dataset")
    if value is None:
        from leve.train.config import TrainConfig

        return TrainConfig.dataset
    if not isinstance(value, str):
        raise LeveError(f"{params_file}: train.dataset must be a name, got {type(value).__name__}")
    return value


def parse_size(text: str, option: str = "--resolution") -> tuple[int, int]:
    """``HxW`` (or ``H×W``) as ``(height, width)``, both positive."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise LeveError(f"{option} expects HxW (height x width, e.g. 240x320), got {shown(text)}") from None
    if h < 1 or w < 1:
        raise LeveError(f"{option} {shown(text, quote=False)}: height and width must be positive")
    return h, w


def size_text(size: tuple[int, int]) -> str:
    """``(height, width)`` written as ``HxW``, the way options take it."""
    return f"{size[0]}x{size[1]}"


# --------------------------------------------------------------------------- command classes


def _flags_as_flags(params: list[Any]) -> list[Any]:
    """A flag (``--version``, ``--help``, ``--flip/--no-flip``) takes no value, so its help shows no type
    (typer's own help would print ``--version <bool>``)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class LeveGroup(TyperGroup):
    """A command group whose help renders flags as flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_as_flags(super().get_params(ctx))


class LeveCommand(TyperCommand):
    """A command whose help renders flags as flags, which still takes its old option spellings and,
    when it reads no params file, says so in its help."""

    renamed: ClassVar[dict[str, str]] = {}  # old spelling -> new, hidden from the help
    size_fallback: ClassVar[tuple[int, int] | None] = None  # takes old --height/--width as --resolution
    no_params: ClassVar[str | None] = None  # reads no params file: why ("" says only that)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # paragraphs as one line each: the group's command list shows the first one whole, not cut
        # where the docstring's lines end
        text: str = getattr(self, "help", None) or ""
        paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n")]
        if self.no_params is not None:
            paragraphs.append(f"{NO_PARAMS}: {self.no_params}." if self.no_params else f"{NO_PARAMS}.")
        self.help = "\n\n".join(p for p in paragraphs if p)

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_as_flags(super().get_params(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rewrite_args(args, self.renamed, self.size_fallback))


def command(renamed: dict[str, str] | None = None, size_fallback: tuple[int, int] | None = None,
            no_params: str | None = None) -> type[LeveCommand]:
    """The command class of a command: ``renamed`` maps each old option spelling to its new one;
    ``size_fallback`` (height, width) makes ``--height H --width W`` mean ``--resolution HxW`` (a missing
    half taken from it); ``no_params`` (the reason, or "") marks a command that reads no params file."""
    attrs = {"renamed": dict(renamed or {}), "size_fallback": size_fallback, "no_params": no_params}
    return type("LeveCommand", (LeveCommand,), attrs)


def deprecated(old: str, new: str) -> None:
    """The one line an old spelling prints (on stderr)."""
    typer.echo(f"warning: {old} is deprecated; use {new}", err=True)


def rewrite_args(args: list[str], renamed: dict[str, str], size_fallback: tuple[int, int] | None) -> list[str]:
    """``args`` with old option spellings replaced by new ones (one warning each); the arguments after
    ``--`` are left alone."""
    out: list[str] = []
    size: dict[str, str] = {}
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            out += [token, *tokens]
            break
        name, eq, value = token.partition("=")
        if size_fallback is not None and name in ("--height", "--width"):
            deprecated(name, "--resolution HxW")
            size[name] = value if eq else next(tokens, "")
            continue
        if name in renamed:
            deprecated(name, renamed[name])
            token = renamed[name] + eq + value
        out.append(token)
    if size and size_fallback is not None:
        if any(t == "--resolution" or t.startswith("--resolution=") for t in out):
            raise LeveError("--height/--width and --resolution exclude each other; use --resolution HxW")
        height = size.get("--height", str(size_fallback[0]))
        width = size.get("--width", str(size_fallback[1]))
        out += ["--resolution", f"{height}x{width}"]
    return out
