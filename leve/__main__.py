"""``python -m leve ...`` (e.g. under ``torchrun --nproc_per_node 2 -m leve train``)."""

from leve.processes import die_with_parent, under_torchrun

if under_torchrun():  # before the command line's imports (seconds): end with torchrun, even if it is killed meanwhile
    die_with_parent()

from leve.cli import main  # noqa: E402

main()
