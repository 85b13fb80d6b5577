"""Per-stage entry points: read the stage's section of params.yaml, apply command-line
overrides, call the library. The `leve` CLI and every `dvc.yaml` stage dispatch here."""
