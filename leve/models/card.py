"""The model card: a Markdown description written beside a checkpoint (``MODEL_CARD.md`` next to
``best.pt``; ``README.md`` of a Hugging Face folder). It states the architecture, parameters, data,
teacher, metrics with the protocol they were measured under, and the licence, from what the
checkpoint records (:mod:`leve.models.lineage`) and, optionally, ``leve eval`` metrics files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from leve.atomic import write_text
from leve.errors import LeveError
from leve.models.checkpoint import CheckpointInfo, read_checkpoint
from leve.models.lineage import Lineage

CARD_NAME = "MODEL_CARD.md"
SHOWN = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "d1", "d2", "d3")
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def count_parameters(state: dict[str, torch.Tensor]) -> int:
    """Learnable parameters of a state dict: every tensor but batch-norm statistics."""
    return sum(v.numel() for k, v in state.items() if not k.endswith(BUFFERS))


def read_metrics(paths: Iterable[str | Path], shown_as: Sequence[str | Path] | None = None) -> list[dict[str, Any]]:
    """``leve eval`` metrics files (``metrics/<dataset>.json``), each with its protocol; ``shown_as``: the
    names the card gives them (default their paths; ``leve eval`` reads its metrics from the staged file
    before the rename, and the card names the final one)."""
    out = []
    paths = list(paths)
    names = [str(n) for n in shown_as] if shown_as is not None else [str(p) for p in paths]
    for path, shown in zip(map(Path, paths), names, strict=True):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LeveError(f"{path}: cannot read metrics JSON ({exc.__class__.__name__}: {exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("student"), dict) or "protocol" not in data:
            raise LeveError(f"{path}: not a `leve eval` metrics file (no 'student' metrics and 'protocol')")
        out.append({**data, "file": shown})
    return out


def _front_matter(lineage: Lineage, transformers: bool = False) -> list[str]:
    library = "transformers" if transformers else "leve"  # a folder with remote code loads in transformers
    return ["---", f"license: {lineage.licence_id}", f"library_name: {library}", "pipeline_tag: depth-estimation",
            "tags:", "- depth-estimation", "- knowledge-distillation", "- leve", *(["- custom_code"] if transformers else []),
            "---", ""]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows] + [""]


def depth_output(info: CheckpointInfo) -> dict[str, str]:
    """What a checkpoint's network output means, stated the same way by the model card, the ONNX
    metadata (``leve_depth_kind``, ``leve_depth_units``, ``leve_output``) and the Hugging Face config:
    ``depth_kind`` (metric | relative), ``units`` and ``output`` (how to read the output ``out``)."""
    from leve.models.depth import MIN_DEPTH_FRACTION

    d, lo = info.max_depth, info.max_depth * MIN_DEPTH_FRACTION
    if info.depth_kind == "relative":
        return {"depth_kind": "relative", "units": "relative (no unit; inverse depth known up to scale and shift)",
                "output": f"out = 100 * r, r the relative inverse depth (disparity, near = large) in [0.01, 1]; "
                          f"relative depth {d:g} / out, right up to an unknown scale (and shift in disparity), not metres"}
    return {"depth_kind": "metric", "units": "m",
            "output": f"out = max_depth / depth: metric depth in metres = {d:g} / out, clamped to [{lo:g}, {d:g}] m"}


def _model_section(info: CheckpointInfo, params: int, name: str) -> list[str]:
    from leve.models.registry import model_spec

    spec = model_spec(info.model)
    h, w = info.resolution
    relative = info.depth_kind == "relative"
    output = ("relative depth (right up to an unknown scale, and shift in disparity; not metres)" if relative
              else f"metric depth in metres, 0.01 x {info.max_depth:g} to {info.max_depth:g} m (read as max_depth / output)")
    kind = ("relative: inverse depth without units (`leve predict` writes it as `<image>_disp16.png`, "
            "round(65535 r), unless `--scale` gives metres)" if relative
            else "metric: metres (`leve predict` writes millimetres in `<image>_depth16.png`)")
    extra = info.extra
    rows: list[list[Any]] = [["architecture", f"`{info.model}`: {spec.description}"], ["encoder", spec.encoder],
            ["parameters", f"{params:,}"], ["input", f"RGB in [0, 1], resized to {h}x{w} (HxW)"],
            ["depth kind", kind], ["units", depth_output(info)["units"]], ["output", output],
            ["network output", depth_output(info)["output"]],
            ["output stride", spec.output_stride],
            ["checkpoint", f"`{name}`" + (f", step {extra['step']}, epoch {extra.get('epoch')}" if "step" in extra else "")]]
    return ["## Model", "", *_table(["", ""], rows)]


def _data_section(lineage: Lineage) -> list[str]:
    if not lineage.datasets:
        return ["## Data", "", "Not recorded in this checkpoint.", ""]
    rows = [[d.get("role"), d.get("name"), d.get("split"), d.get("samples"),
             ("yes" + (f" ({d['labels_fraction']:g} of the samples)" if d.get("labels_fraction", 1) < 1 else ""))
             if d.get("has_depth") else "no (teacher only)", d.get("units"), f"`{str(d.get('fingerprint'))[:16]}`",
             f"`{d.get('path')}`"] for d in lineage.datasets]
    return ["## Data", "", *_table(["role", "dataset", "split", "samples", "depth used", "units",
                                    "store fingerprint", "store"], rows)]


def _teacher_section(lineage: Lineage) -> list[str]:
    t = lineage.teacher
    if t is None:
        text = "No teacher: trained without distillation." if lineage.recorded else \
            f"Teacher {lineage.teacher_text()}."
        return ["## Teacher", "", text, ""]
    rows: list[list[Any]] = [["model", f"`{t['model']}`" + (f" (leve name `{t['name']}`)" if t.get("name") else "")],
            ["revision", f"`{t.get('revision')}`"], ["licence", t.get("licence")],
            ["non-commercial", "**yes**" if t.get("non_commercial") else "no"], ["source", t.get("source")],
            ["config hash", f"`{str(t.get('config_hash'))[:16]}`"],
            ["cache", f"`{t.get('cache')}` (identity `{str(t.get('cache_fingerprint'))[:16]}`)"],
            ["distillation", f"eps {t.get('eps')}, KD loss `{t.get('loss')}`"]]
    return ["## Teacher", "", *_table(["", ""], rows)]


def _val_section(info: CheckpointInfo) -> list[str]:
    val = info.extra.get("val")
    if not isinstance(val, dict) or not val:
        return []
    cfg = info.extra.get("train_config") or {}
    h, w = info.resolution
    limit = f", first {cfg['val_limit']} images" if cfg.get("val_limit") else ""
    align = ("each prediction aligned to the ground truth first (least-squares scale and shift in disparity)"
             if info.depth_kind == "relative" else "metric depth as predicted, no alignment")
    protocol = (f"`leve train` validation on `{cfg.get('dataset', info.extra.get('dataset'))}/{cfg.get('val_split', 'val')}`"
                f"{limit}: at the training resolution {h}x{w}, no crop, no flip, pixels with depth > 0, "
                f"mean of per-image metrics; {align}.")
    keys = [k for k in SHOWN if k in val]
    return ["### Validation during training", "", protocol, "",
            *_table(keys, [[f"{float(val[k]):.4f}" for k in keys]])]


def _describe_protocol(p: dict[str, Any]) -> str:
    crop = p.get("crop") or {}
    return (f"protocol `{p.get('name')}`: crop {crop.get('name', 'none')}, flip {p.get('flip')}, depth "
            f"{p.get('min_depth')}-{p.get('max_depth')}, alignment {p.get('align')}, upsampling {p.get('upsample')}, "
            f"aggregation {p.get('aggregation')}")


def _eval_rows(m: dict[str, Any], keys: list[str]) -> list[list[Any]]:
    """The student's row and, when the metrics file scored it under the same protocol, the teacher's."""
    rows: list[list[Any]] = [["student", *(f"{float(m['student'][k]):.4f}" for k in keys)]]
    teacher = m.get("teacher")
    if isinstance(teacher, dict) and all(k in teacher for k in keys):
        source = m.get("teacher_source") or {}
        align = m["protocol"].get("teacher_align", "lstsq")
        rows.append([f"teacher `{source.get('model', '?')}` ({align}-aligned)", *(f"{float(teacher[k]):.4f}" for k in keys)])
    return rows


def _eval_section(metrics: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for m in metrics:
        student = m["student"]
        keys = [k for k in SHOWN if k in student]
        lines += [f"### {m.get('dataset')} / {m.get('split')} (`leve eval`, `{m['file']}`)", "",
                  _describe_protocol(m["protocol"]) + f"; {student.get('count')} images.", "",
                  *_table(["model", *keys], _eval_rows(m, keys))]
    return lines


def _licence_section(lineage: Lineage) -> list[str]:
    lines = ["## Licence", "", lineage.licence + ".", ""]
    if lineage.non_commercial:
        lines.insert(2, "**Non-commercial use only.** This student was distilled from the outputs of a teacher "
                        "released under a non-commercial licence; its weights and predictions carry that restriction.")
        lines.insert(3, "")
    if lineage.encoder_weights:
        e = lineage.encoder_weights
        lines += [f"The encoder started from `{e['file']}` ({e['licence']}).", ""]
    return lines


def _transformers_use(info: CheckpointInfo) -> list[str]:
    """How to run a Hugging Face folder with transformers' remote code (no leve needed)."""
    meaning = ("metric depth in metres" if info.depth_kind == "metric"
               else "relative depth (right up to an unknown scale, and shift in disparity; not metres)")
    return ["With transformers alone (the network's code is in this folder: `modeling_leve.py`, bundled from leve):",
            "", "```python", "from transformers import pipeline", "",
            'depth = pipeline("depth-estimation", model="<this folder or repo>", trust_remote_code=True)',
            'out = depth("image.jpg")  # out["predicted_depth"]: (H, W) at the image size', "```", "",
            f"`predicted_depth` is {meaning}, equal to `leve predict`'s depth (`--depth-format npy`) within 1e-5; the "
            "image processor resizes the image to the model's resolution as leve does (bilinear, antialiased, "
            "8-bit) and the depth back to the image.", ""]


def render_card(info: CheckpointInfo, params: int, metrics: list[dict[str, Any]] | None = None,
                name: str | None = None, transformers: bool = False) -> str:
    """The model card of a checkpoint (``params``: its learnable parameters) as Markdown; ``transformers``:
    a Hugging Face folder with remote code (front matter ``library_name: transformers``, its use)."""
    lineage = Lineage.of(info)
    name = name or Path(info.path).name
    banner = ([f"> **Non-commercial use only**: distilled from `{lineage.teacher['model']}` "
               f"({lineage.teacher['licence']}).", ""] if lineage.non_commercial and lineage.teacher else [])
    metric_lines = _val_section(info) + _eval_section(metrics or [])
    lines = [*_front_matter(lineage, transformers), f"# leve student `{info.model}`", "", *banner,
             "A monocular depth model trained with leve (`leve train`); what it was distilled from and on "
             "which data is recorded in the checkpoint (`extra.lineage`) and shown below.", "",
             *_model_section(info, params, name), *_data_section(lineage), *_teacher_section(lineage),
             "## Metrics", "", *(metric_lines or ["No metrics recorded.", ""]), *_licence_section(lineage),
             "## Use", "", "```bash", f"leve predict image.jpg --checkpoint {name}", "```", "",
             "or in Python: `model, info = leve.models.checkpoint.load_checkpoint(path)` (a file or a folder "
             "exported with `--format hf`).", "", *(_transformers_use(info) if transformers else [])]
    return "\n".join(lines)


def write_model_card(checkpoint: str | Path, out: str | Path | None = None,
                     metrics: Iterable[str | Path] = (), name: str | None = None,
                     metrics_shown_as: Sequence[str | Path] | None = None) -> Path:
    """Write the card of ``checkpoint`` (default ``MODEL_CARD.md`` beside it; a folder's ``README.md``),
    atomically; ``name``: how the card calls the checkpoint (default its file name, right beside it)."""
    state, info = read_checkpoint(checkpoint)
    folder = Path(checkpoint).is_dir()  # a Hugging Face folder's card is its README.md
    out = Path(out) if out else Path(checkpoint) / "README.md" if folder else Path(checkpoint).parent / CARD_NAME
    remote = folder and '"auto_map"' in (Path(checkpoint) / "config.json").read_text(encoding="utf-8")  # transformers' code
    text = render_card(info, count_parameters(state), read_metrics(metrics, metrics_shown_as), name or Path(checkpoint).name,
                       transformers=remote)
    return write_text(out, text)
