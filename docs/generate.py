"""Write the tables of numbers in ``docs/*.md`` from the committed JSON artifacts.

Every measured number in the docs lives between ``<!-- generated:NAME -->`` and
``<!-- /generated -->``; this script rewrites those blocks from the artifact that :data:`TABLES`
names, each with its source file and the command that makes it.

    python docs/generate.py          # rewrite the pages whose tables differ from their artifacts
    python docs/generate.py --check  # list them and exit 1 instead (tests/test_docs.py does the same)

Run it after ``dvc repro`` or a ``leve bench`` run rewrites an artifact. No pipeline stage imports it.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n).*?(<!-- /generated -->)", re.S)


def _json(path: str) -> Any:
    return json.loads((ROOT / path).read_text())


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _source(path: str, command: str) -> str:
    return (f"*Source: `{path}`, made by `{command}`; when: the artifact's last commit "
            f"(`git log -1 --format=%cs -- {path}`). Regenerate this table with `python docs/generate.py`.*")


def _n(value: float, digits: int = 3) -> str:
    return f"{value:,.{digits}f}"


def metrics_table(path: str, command: str) -> str:
    """A ``metrics/<ds>.json`` of ``leve eval``: the student's and the teacher's headline metrics."""
    data = _json(path)
    proto = data["protocol"]
    rows = []
    for model in ("student", "teacher"):
        if model in data:
            m = data[model]
            label = (f"student `{data['checkpoint']['model']}` ({data['checkpoint']['path']})" if model == "student"
                     else f"teacher `{data.get('teacher_source', {}).get('model', '?')}` ({proto['teacher_align']}-aligned)")
            rows.append([label, _n(m["rmse"]), _n(m["abs_rel"]), _n(m["d1"]), _n(m["d2"]), _n(m["d3"]), str(m["count"])])
    head = (f"{data['dataset']} {data['split']} split, protocol `{proto['name']}` (crop {proto['crop']['name']}, "
            f"{proto['aggregation']} aggregation)\n\n")
    return head + _table(["model", "RMSE", "REL", "δ1", "δ2", "δ3", "samples"], rows) + "\n\n" + _source(path, command)


def metrics_csv() -> str:
    path = "reports/metrics.csv"
    with open(ROOT / path, newline="") as f:
        rows = [[r["dataset"], r["split"], r["model"], r["group"], _n(float(r["rmse"])), _n(float(r["abs_rel"])),
                 _n(float(r["d1"])), r["count"]] for r in csv.DictReader(f)]
    return (_table(["dataset", "split", "model", "group", "RMSE", "REL", "δ1", "samples"], rows) + "\n\n"
            + _source(path, "dvc repro tables"))


def bench_io() -> str:
    path = "docs/bench_io.json"
    data = _json(path)
    names = {"source_zip": "source zip (JPEG + PNG decode)", "store_raw": "store, `raw`", "store_jpeg": "store, `jpeg`",
             "store_jpeg_half_res": "store, `jpeg`, half-resolution decode"}
    rows = [[names.get(k, k), _n(r["bytes_per_sample"] / 1000, 1) + " kB", _n(r["single_process_samples_per_s"], 0),
             _n(r["dataloader_samples_per_s"], 1), _n(r["speedup_single"], 2) + "×", _n(r["bytes_ratio"], 2) + "×",
             "yes" if r["meets_goal"] else "no"] for k, r in data["readers"].items()]
    h, w = data["resolution"]
    head = (f"{data['samples']} samples of a {data['archive']} at {h}×{w}, DataLoader with {data['workers']} workers; "
            f"goal: {data['goal']}.\n\n")
    header = ["reader", "bytes/sample", "samples/s, 1 process", "samples/s, DataLoader", "speed vs source", "bytes vs source",
              "meets goal"]
    return head + _table(header, rows) + "\n\n" + _source(path, "leve bench io --out docs/bench_io.json")


def bench_train() -> str:
    path = "docs/bench_train.json"
    d = _json(path)
    s, r = d["seconds_per_step"], d["samples_per_s"]
    rows = [["plain (ε = 0)", _n(s["plain"]), _n(r["plain"], 2), "1"],
            ["KD from the cache", _n(s["kd_cache"]), _n(r["kd_cache"], 2), _n(d["ratio_kd_cache_over_plain"])],
            [f"KD with the teacher online (thesis; {d['online_teacher']})", _n(s["kd_online"]), _n(r["kd_online"], 2),
             _n(d["ratio_kd_online_over_plain"])]]
    h, w = d["input"]
    lo = d["loader"]
    ms = lo["worker_ms_per_sample"]
    jpeg = d["loader_jpeg_store"]["samples_per_cpu_s"]
    return (f"Device {d['device']} ({d['torch_threads']} torch threads), `{d['student']}`, input {h}×{w}, batch "
            f"{d['batch_size']}, {d['steps_timed']} steps timed; goal: {d['goal']}.\n\n"
            + _table(["step", "s/step", "samples/s", "ratio to plain"], rows) + "\n\n"
            + _table(["loader ({} workers, {})".format(lo["workers"], lo["transfer"]), "value"], [
                ["samples/s delivered", _n(lo["loader_samples_per_s"], 1)],
                ["samples/s the model consumes", _n(lo["model_samples_per_s"], 2)],
                ["model waits for data", "yes" if lo["model_waits_for_data"] else "no"],
                ["samples per worker CPU second", _n(lo["loader_samples_per_cpu_s"], 1)],
                ["shared batches ÷ torch's collation (`shared_over_collate`)", _n(lo["shared_over_collate"], 2) + "×"],
                ["this loader ÷ the one before (`train_over_before`)", _n(lo["train_over_before"], 2) + "×"],
                ["worker ms per sample: RGB read", _n(ms["read_rgb"])],
                ["worker ms per sample: 8-bit RGB resize", _n(ms["resize_rgb_uint8"])],
                ["worker ms per sample: depth read", _n(ms["read_depth"])],
                ["worker ms per sample: teacher map read", _n(ms["read_teacher_float16"])],
                ["worker ms per sample: whole sample into its batch", _n(ms["sample_into_batch"])],
                ["main process ms per sample: maps resized on the device", _n(ms["finish_on_device"])],
                ["JPEG store, samples per worker CPU second: `decode: full`", _n(jpeg["full"], 1)],
                ["JPEG store, samples per worker CPU second: `decode: draft`", _n(jpeg["draft"], 1)],
            ]) + "\n\n" + _source(path, "leve bench train --out docs/bench_train.json"))


def bench_models() -> str:
    from leve.models.registry import model_spec  # the published figures, as the registry cites them

    path = "docs/bench_models_480x640.json"
    d = _json(path)
    base = d["models"]["leve"]["fp32"]["eager"]["median_ms"]
    rows = []
    for name, m in d["models"].items():
        ms = m["fp32"]["eager"]["median_ms"]
        pub = next(iter(model_spec(name).results), None)
        published = "" if pub is None else (f"RMSE {pub.rmse:g}, REL {pub.rel:g}, δ1 {pub.d1:g}"
                                            + (f", {pub.fps:g} FPS" if pub.fps is not None else "") + f" ({pub.citation})")
        rows.append([f"`{name}`", "H" if m["output_stride"] == 1 else f"H/{m['output_stride']}", f"{m['params']['total']:,}",
                     _n(m["gmacs"], 1), _n(ms, 0), _n(ms / base, 2), published])
    h, w = d["resolution"]
    env = d["environment"]
    return (f"{h}×{w}, batch {d['batch']}, fp32 eager, {d['warmup']} warm-up run(s) then the median of {d['repeats']}, "
            f"{env['threads']} threads of a {env['machine']} {env['device']} (1-minute load average {env['loadavg_1min_start']} "
            f"at the start, {env['loadavg_1min_end']} at the end). Published figures are NYU, from the model registry "
            "(`ModelSpec.results`), as the cited table printed them.\n\n"
            + _table(["model", "output", "parameters", "GMACs", "CPU latency (ms)", "× leve", "published figures (source)"], rows)
            + "\n\n" + _source(path, "leve bench model --resolution 480x640 --warmup 1 --repeats 3 --modes eager "
                                     "--models <all 13> --out docs/bench_models_480x640.json"))


def bench_runtimes() -> str:
    path = "docs/bench_runtimes_leve_480x640.json"
    d = _json(path)
    modes = ["channels_last", "torch", "compiled", "onnx"]
    rows = []
    for run, r in d["runs"].items():
        leve = r["models"]["leve"]["fp32"]
        env = r["environment"]
        rows.append([f"{run} ({env['loadavg_1min_start']} → {env['loadavg_1min_end']}, {r['repeats']} rounds)",
                     _n(leve["eager"]["median_ms"], 0) + " ms"]
                    + [_n(leve[m]["latency_ratio_vs_eager"]) if m in leve else "" for m in modes])
    return (_table(["run (load average)", "eager", "channels-last", "`torch`", "`compiled`", "`onnx`"], rows) + "\n\n"
            + _source(path, d["command"]))


def bench_runtime_table() -> str:
    """``leve bench model --modes ...`` with every runtime: its ``runtimes`` table (ratios to eager in the same
    rounds, difference from eager's output, int8's accuracy against fp32 ONNX on a store split)."""
    path = "docs/bench_runtimes_student.json"
    d = _json(path)
    rows = []
    for run, r in d["runs"].items():
        env = r["environment"]
        for mode, v in r["runtimes"]["models"]["leve"].items():
            int8 = "d1_drop_vs_onnx" in v
            rows.append([f"{run} ({env['loadavg_1min_start']} → {env['loadavg_1min_end']}, {r['repeats']} rounds)",
                         f"`{mode}`", _n(v["median_ms"], 1) + " ms", _n(v["latency_ratio_vs_eager"]),
                         f"{v['max_diff_vs_eager']:.1e}", f"{v['mean_diff_vs_eager']:.1e}",
                         _n(-v["d1_drop_vs_onnx"], 5) if int8 else "", _n(v["rmse_rise_vs_onnx"], 4) if int8 else ""])
    return (f"`{d['checkpoint']}` ({d['data']}), {d['machine']}.\n\n"
            + _table(["run (load average)", "runtime", "median", "÷ eager", "max diff / range", "mean diff / range",
                      "Δδ1 vs fp32 ONNX", "ΔRMSE (m)"], rows) + "\n\n" + _source(path, d["command"]))


def bench_int8() -> str:
    """``leve bench model --modes onnx-int8`` runs: int8 against fp32 ONNX, and why the goal is missed."""
    path = "docs/bench_int8_leve.json"
    d = _json(path)
    rows, ops = [], []
    for run, r in d["runs"].items():
        m = r["models"]["leve"]["fp32"]
        i, a = m["onnx-int8"], m["onnx-int8"]["accuracy"]
        env = r["environment"]
        rows.append([f"{run} ({env['loadavg_1min_start']} → {env['loadavg_1min_end']}, {r['repeats']} rounds)",
                     _n(m["onnx"]["median_ms"], 1) + " ms", _n(i["median_ms"], 1) + " ms", _n(i["latency_ratio_vs_onnx"]),
                     f"{_n(a['onnx']['d1'])} → {_n(a['onnx-int8']['d1'])}", _n(-a["d1_drop"], 5),
                     _n(a["rmse_rise"], 4), "yes" if i["int8_goal"]["met"] else "no"])
        if "operators" in i:
            o = i["operators"]
            top = ", ".join(f"{op} {_n(v['share'] * 100, 0)}%" for op, v in list(o["onnx-int8"]["operators"].items())[:5])
            ops.append([run, _n(o["onnx"]["total_ms"], 1) + " ms", _n(o["onnx-int8"]["total_ms"], 1) + " ms",
                        _n(o["conv_speedup"], 2) + "×", _n(o["int8_overhead_share"] * 100, 0) + "%", top])
    text = (f"`{d['checkpoint']}` ({d['data']}), {d['machine']}.\n\n"
            + _table(["run (load average)", "fp32 ONNX", "int8", "int8 / fp32", "δ1 fp32 → int8", "Δδ1", "ΔRMSE (m)",
                      "goal met"], rows))
    if ops:
        text += "\n\nWhy, operator by operator (onnxruntime profiling, median over 10 runs):\n\n" + _table(
            ["run", "fp32 kernels", "int8 kernels", "conv speed-up", "Q/DQ + transposes", "int8's top operators"], ops)
    return text + "\n\n" + _source(path, d["command"])


def bench_model() -> str:
    path = "metrics/bench_model.json"
    d = _json(path)
    h, w = d["resolution"]
    rows = [[f"`{name}`", f"{m['params']['total']:,}", _n(m["gmacs"]), _n(m["fp32"]["eager"]["median_ms"], 1),
             _n(m["fp32"]["eager"]["fps"], 2)] for name, m in d["models"].items()]
    return (f"{h}×{w}, batch {d['batch']}, fp32 eager, {d['warmup']} warm-up runs, {d['repeats']} timed, "
            f"{d['environment']['threads']} threads on {d['environment']['device']}.\n\n"
            + _table(["model", "parameters", "GMACs", "latency (ms)", "FPS"], rows) + "\n\n"
            + _source(path, "dvc repro bench-model"))


def loader_side_by_side() -> str:
    path = "docs/loader_side_by_side.jsonl"
    lines = [json.loads(line) for line in (ROOT / path).read_text().splitlines() if line.strip()]
    kinds = {"nyu8": "rendered rooms, depth in 8 bits (NYU's training format)", "rooms": "rendered rooms, continuous depth",
             "random": "random pixels and depth (`leve bench train`'s step store)"}
    rows = []
    for kind, label in kinds.items():
        runs = [x for x in lines if x["kind"] == kind]
        before = [x["samples_per_cpu_s"] for x in runs if x["leve"].startswith("/tmp/old/")]
        now = [x["samples_per_cpu_s"] for x in runs if not x["leve"].startswith("/tmp/old/")]
        rows.append([label, ", ".join(_n(v, 1) for v in before), ", ".join(_n(v, 1) for v in now),
                     ", ".join(_n(b and n / b, 2) for b, n in zip(before, now, strict=True))])
    return (_table(["store", "before (271d170)", "now", "now ÷ before"], rows) + "\n\n"
            + _source(path, "python docs/loader_side_by_side.py"))


def published() -> str:
    """``leve/models/published.csv``: every row a source printed for a registered model, as printed."""
    from leve.models.published import PUBLISHED_FILE, THESIS_FPS_DEVICE, published_text

    path = f"leve/models/{PUBLISHED_FILE}"
    lines = list(csv.DictReader(published_text().splitlines()))
    cols = ["rmse", "rel", "d1", "d2", "d3", "log10", "fps", "latency_s"]
    rows = [[r["source"], r["table"], f"`{r['protocol']}`", f"`{r['model']}`", r["row"], r["dataset"],
             r["train_resolution"], r["kd_eps"], *(r[c] or "–" for c in cols)] for r in lines]
    header = ["source", "table", "protocol", "model", "row", "dataset", "trained at", "ε", "RMSE", "REL", "δ1", "δ2",
              "δ3", "log10", "FPS", "latency (s)"]
    return (f"{len(rows)} rows; the thesis's FPS on a {THESIS_FPS_DEVICE}; – not reported.\n\n"
            + _table(header, rows) + "\n\n"
            + f"*Source: `{path}` (package data, read by the model registry, `leve report` and the tests). "
              "Regenerate this table with `python docs/generate.py`.*")


def teachers() -> str:
    """Every registered teacher (``leve.teacher.registry.REGISTRY``): where it comes from, its licence, whether a
    student of it is non-commercial (the test ``leve export`` enforces), its depth kind and maximum depth."""
    from leve.models.lineage import is_non_commercial
    from leve.teacher.registry import list_teachers

    rows = []
    for e in list_teachers():
        source = f"`{e.hub_id}`" if e.hub_id else "built in (random weights)" if e.is_builtin else "shipped with leve"
        depth = "–" if e.depth_kind == "relative" else f"{e.max_depth:g} m" if e.max_depth else "unbounded"
        rows.append([f"`{e.name}`", source, e.licence, "**yes**" if is_non_commercial(e.licence) else "no",
                     e.depth_kind, depth, "yes" if not e.runnable else "not yet (see Teachers)"])
    return (f"{len(rows)} teachers.\n\n"
            + _table(["name", "source", "licence", "non-commercial student", "depth kind", "max depth",
                      "teacher cache runs it"], rows)
            + "\n\n*Source: `leve/teacher/registry.py` (`REGISTRY`; the non-commercial column is "
              "`leve.models.lineage.is_non_commercial` of the licence). Regenerate this table with "
              "`python docs/generate.py`.*")


def bench_train_bucket() -> str:
    """``leve bench train --source``: the training loader on a bucket store / on its local copy, per epoch."""
    path = "docs/bench_train_bucket.json"
    d = _json(path)
    b, loc = d["readers"]["bucket"], d["readers"]["local"]
    rows = [["1 (cache empty)", _n(loc["first_epoch_samples_per_s"], 1), _n(b["first_epoch_samples_per_s"], 1),
             "**" + _n(d["ratio_first_epoch"], 3) + "×**"]]
    rows += [[str(e + 2), _n(lr, 1), _n(br, 1), _n(br / lr, 3) + "×"]
             for e, (br, lr) in enumerate(zip(b["samples_per_s_per_epoch"][1:], loc["samples_per_s_per_epoch"][1:]))]
    rows += [[f"2–{d['epochs']} (samples over seconds)", _n(loc["later_epochs_samples_per_s"], 1),
              _n(b["later_epochs_samples_per_s"], 1), "**" + _n(d["ratio_later_epochs"], 3) + "×**"]]
    h, w = d["input"]
    head = (f"{d['samples_per_epoch']} samples of the {d['split']} split per epoch, {d['epochs']} epochs, batch "
            f"{d['batch_size']}, input {h}×{w}, {d['workers']} workers ({d['device']}, {d['torch_threads']} torch "
            f"threads); store {_n(d['store_bytes'] / 1e6, 1)} MB in {d['store_objects']} objects, cache bound "
            f"{_n(d['cache_bytes'] / 1e6, 1)} MB; goal: {d['goal']}: **{'met' if d['meets_goal'] else 'not met'}**.\n\n")
    command = ("leve bench train --source s3://bkt/big/synthetic.zarr --samples 64 --workers 2 --epochs 4 "
               "--out docs/bench_train_bucket.json")
    return head + _table(["epoch", "local disk, samples/s", "bucket + cache, samples/s", "bucket / local"], rows) + (
        "\n\n" + _source(path, command))


def cli_help() -> str:
    """Every command's ``--help``, from the snapshots ``tests/cli/test_help_snapshots.py`` checks against
    the command line itself (so this page cannot drift from ``leve``)."""
    folder = ROOT / "tests" / "cli" / "help"
    parts = []
    for path in sorted(folder.glob("*.txt"), key=lambda p: p.stem.split(".")):
        command = path.stem.replace(".", " ")
        parts.append(f"### `{command}`\n\n```text\n{path.read_text().strip(chr(10))}\n```")
    return ("\n\n".join(parts) + "\n\n*Source: `tests/cli/help/*.txt` (checked against `leve ... --help` by "
            "`tests/cli/test_help_snapshots.py`; `UPDATE_SNAPSHOTS=1` rewrites them). Regenerate this page with "
            "`python docs/generate.py`.*")


def few_labels(path: str) -> str:
    """A JSON of scripts/few_labels.py: every arm's test RMSE per seed, mean ± sd (also with the student
    lstsq-aligned), and each distilling arm's share of the gap to the teacher's aligned row closed."""
    d = _json(path)

    def stat(s: dict[str, Any]) -> str:
        return _n(s["mean"], 4) + ("" if s["sd"] is None else f" ± {_n(s['sd'], 4)}")

    def p(c: dict[str, Any]) -> str:
        return "–" if c["welch_p"] is None else f"{c['welch_p']:.4f}"

    rows = [[f"`{name}`", a["note"], ", ".join(_n(v, 4) for v in a["rmse"]["values"]), stat(a["rmse"]),
             stat(a["rmse_lstsq"])] for name, a in d["arms"].items()]
    teachers = sorted({a["teacher_rmse"] for a in d["arms"].values()})
    comps = [[f"`{c['kd']}` vs `{c['eps0']}`", f"{c['difference']:+.4f}", p(c), f"{c['gap_closed']:.1%}",
              "yes" if c["goal_met"] else "no", f"{c['lstsq']['difference']:+.4f}", p(c["lstsq"]),
              f"{c['lstsq']['gap_closed']:.1%}"] for c in d["comparisons"]]
    seeds = ", ".join(map(str, d["seeds"]))
    return (f"Teacher (`embedded`, lstsq-aligned per image): RMSE {', '.join(_n(t, 4) for t in teachers)}.\n\n"
            + _table(["arm", "setting", f"RMSE per seed {seeds}", "mean ± sd", "student lstsq-aligned"], rows)
            + "\n\n"
            + _table(["distilled vs ε = 0", "difference", "Welch p", "gap closed", f"≥ {d['goal']:.0%}",
                      "aligned: difference", "Welch p", "gap closed"], comps)
            + "\n\n" + _source(path, d["command"]))

TABLES: dict[str, Callable[[], str]] = {
    "metrics_synthetic": lambda: metrics_table("metrics/synthetic.json", "dvc repro eval@synthetic"),
    "metrics_csv": metrics_csv,
    "bench_io": bench_io,
    "bench_train": bench_train,
    "bench_train_bucket": bench_train_bucket,
    "bench_models": bench_models,
    "bench_runtimes": bench_runtimes,
    "bench_int8": bench_int8,
    "bench_runtime_table": bench_runtime_table,
    "bench_model": bench_model,
    "loader_side_by_side": loader_side_by_side,
    "published": published,
    "cli_help": cli_help,
    "teachers": teachers,
    "few_labels": lambda: few_labels("docs/few_labels.json"),
    "few_labels_seed0": lambda: few_labels("docs/few_labels_seed0.json"),
}


def render(text: str) -> str:
    """``text`` with every generated block rewritten from its artifact."""
    def block(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in TABLES:
            raise SystemExit(f"error: unknown generated table {name!r} (known: {', '.join(TABLES)})")
        return f"{m[1]}{TABLES[name]()}\n{m[3]}"
    return BLOCK.sub(block, text)


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def stale() -> list[Path]:
    """The pages whose generated tables differ from their artifacts."""
    return [p for p in pages() if render(p.read_text()) != p.read_text()]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    changed = stale()
    for page in changed:
        if check:
            print(f"error: {page.relative_to(ROOT)}: a generated table differs from its artifact; run python docs/generate.py")
        else:
            page.write_text(render(page.read_text()))
            print(f"wrote {page.relative_to(ROOT)}")
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
