"""``python -m leve ...`` (e.g. under ``torchrun --nproc_per_node 2 -m leve train``)."""

from leve.cli import main

main()
