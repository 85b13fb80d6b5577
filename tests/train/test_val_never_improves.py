"""Issue 27, item 2 (training): a run whose validation never improves says so in one ``warning:`` line,
and the summary never reports ``best val RMSE inf`` as a result. Each premise (improved or not) is
read back from the run's own DVCLive curve and judged here by the rule written out in the test."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from leve.train.loop import TrainResult
from leve.train.stage import KDConfig, TrainConfig
from tests.train.test_train import write_params


def _val_rmse(log_dir: Path) -> list[float]:
    """The val RMSE of every validation, in order, from DVCLive's TSV."""
    rows = (log_dir / "plots/metrics/val/rmse.tsv").read_text().splitlines()[1:]
    return [float(r.split("\t")[1]) for r in rows]


def _never_improved(values: list[float]) -> bool:
    """The rule, naively: no finite value at all, or at least two values and none after the first below it."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return bool(values)
    return len(values) >= 2 and math.isfinite(values[0]) and all(not v < values[0] for v in values[1:])


def _train(run_cli, data, out: Path, *sets: str):
    params = write_params(out / "params.yaml", data, out)
    base = ["kd.eps=0", "batch_size=8", "epochs=1", "val_every=1", "log_every=6"]
    return run_cli("train", "--params", params, *[a for s in (*base, *sets) for a in ("--set", s)])


def test_a_run_that_cannot_improve_warns_once_and_reports_no_inf(run_cli, synthetic_with_teacher, tmp_path):
    """lr 0 (Adam then moves no weight) and BN frozen after the first validation (bn_after_validation:
    eval): the six validations after steps 1..6 score the same weights and statistics."""
    res = _train(run_cli, synthetic_with_teacher, tmp_path, "lr=0", "bn_after_validation=eval")
    assert res.code == 0, res.stderr
    values = _val_rmse(tmp_path / "dvclive")
    assert len(values) == 6 and _never_improved(values) and len(set(values)) == 1
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "never improved on its first value" in warnings[0]
    assert f"({values[0]:.4f} at step 1) in 6 validations" in warnings[0]
    summary = res.stderr.strip().splitlines()[-1]
    assert summary.endswith(f"best val RMSE {values[0]:.4f} at step 1") and "inf" not in summary


def test_a_run_that_improves_does_not_warn(run_cli, synthetic_with_teacher, tmp_path):
    res = _train(run_cli, synthetic_with_teacher, tmp_path, "lr=2e-3")
    assert res.code == 0, res.stderr
    values = _val_rmse(tmp_path / "dvclive")
    assert len(values) == 6 and not _never_improved(values)
    assert "warning:" not in res.stderr
    best = min(values)
    assert res.stderr.strip().splitlines()[-1].endswith(f"best val RMSE {best:.4f} at step {values.index(best) + 1}")


def _result(**kw) -> TrainResult:
    base = dict(out_dir=Path("models/student"), steps=36, seconds=1.0, samples=288, best_rmse=float("inf"), best_step=36)
    return TrainResult(**{**base, **kw})


@pytest.mark.parametrize(("kw", "best", "warns"), [
    (dict(val_has_depth=False), "no depth in the val split, so no val RMSE: best.pt is the model at step 36", None),
    (dict(val_count=0), "not validated yet", None),
    (dict(val_count=3, val_first_step=12), "no finite val RMSE in 3 validation(s): best.pt not written",
     "none of 3 validation(s) gave a finite RMSE"),
    (dict(val_count=1, val_first_step=36, best_rmse=0.5), "best val RMSE 0.5000 at step 36", None),
    (dict(val_count=3, val_first_step=12, best_rmse=0.5, best_step=12), "best val RMSE 0.5000 at step 12",
     "never improved on its first value (0.5000 at step 12) in 3 validations"),
    (dict(val_count=3, val_first_step=12, best_rmse=0.4, best_step=24), "best val RMSE 0.4000 at step 24", None),
])
def test_summary_and_warning_for_each_outcome(kw, best, warns):
    """What the last line says in each case (a val split without depth keeps the latest model; a run
    stopped before its first validation has none), and when the warning comes."""
    result = _result(**kw)
    assert result.best() == best and result.summary().endswith(best) and "inf" not in result.summary()
    warning = result.warning()
    assert (warning is None) if warns is None else (warning.startswith("warning: models/student: ") and warns in warning)


def test_config_refuses_unknown_mode():
    from leve.errors import LeveError

    with pytest.raises(LeveError, match="bn_after_validation must be one of train, eval, got 'frozen'"):
        TrainConfig(bn_after_validation="frozen", kd=KDConfig(eps=0.0))
