"""Lineage: which teacher and which data a student was distilled from, and the licence that follows.

Training records it in the checkpoint's ``extra["lineage"]`` (:func:`leve.train.lineage.training_lineage`)::

    teacher         None (no distillation) or {model, name, revision, licence, non_commercial, source,
                    config_hash, cache, cache_fingerprint, eps, loss}: the teacher cache's own record
                    (the revision the hub actually resolved, the licence of the registry entry)
    datasets        [{role, name, path, split, samples, has_depth, units, fingerprint, completed_at}, ...]:
                    the train and val splits, identified by their store's fingerprint
    encoder_weights None or {file, licence}: the ImageNet file the encoder started from
    licence         the student's terms as far as its teacher decides them; licence_id its SPDX-like id
    non_commercial  True when the teacher's licence forbids commercial use (Depth-Anything V2 Base and
                    Large, CC-BY-NC-4.0): the student is a derivative of the teacher's outputs

:class:`Lineage` reads it back (``Lineage.of(info)``) for ``leve predict``, ``leve serve``,
``leve export`` (ONNX ``metadata_props``, the Hugging Face folder) and the model card.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# "research use only" (Apple's licence of DepthPro) forbids commercial use as plainly as NC does
NON_COMMERCIAL = re.compile(r"\bNC\b|\bnon[- ]?commercial|\bresearch[- ]use only", re.IGNORECASE)
NC_LICENCE = "CC-BY-NC-4.0 (non-commercial use only)"
NC_ID = "cc-by-nc-4.0"
OPEN_ID = "apache-2.0"


def is_non_commercial(licence: str | None) -> bool:
    """True when a licence text forbids commercial use (``CC-BY-NC-4.0``, "non-commercial")."""
    return bool(licence) and NON_COMMERCIAL.search(str(licence)) is not None


def student_licence(teacher: dict[str, Any] | None) -> tuple[str, str]:
    """(licence text, id) of a student as far as its teacher decides it."""
    if teacher is None:
        return "Apache-2.0 (no teacher; the terms of the training data still apply)", OPEN_ID
    if teacher["non_commercial"]:
        return f"{NC_LICENCE}, inherited from the teacher {teacher['model']}", NC_ID
    licence = str(teacher["licence"])
    if licence.lower().startswith("unknown"):
        return f"unknown: the teacher's licence is unknown ({licence})", "unknown"
    return f"{licence} (the teacher's; the terms of the training data still apply)", OPEN_ID


@dataclass
class Lineage:
    """A checkpoint's lineage as recorded (``recorded`` False for checkpoints written before it was)."""

    teacher: dict[str, Any] | None = None
    datasets: list[dict[str, Any]] = field(default_factory=list)
    encoder_weights: dict[str, Any] | None = None
    licence: str = "unknown (no lineage recorded)"
    licence_id: str = "unknown"
    non_commercial: bool = False
    recorded: bool = False

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> Lineage:
        """The lineage in a checkpoint's ``extra`` (an empty, unrecorded one when there is none)."""
        raw = extra.get("lineage")
        if not isinstance(raw, dict):
            return cls()
        return cls(raw.get("teacher"), list(raw.get("datasets") or []), raw.get("encoder_weights"),
                   str(raw.get("licence", "unknown")), str(raw.get("licence_id", "unknown")),
                   bool(raw.get("non_commercial")), True)

    @classmethod
    def of(cls, info: Any) -> Lineage:
        """The lineage of a :class:`~leve.models.checkpoint.CheckpointInfo`."""
        return cls.from_extra(info.extra)

    def teacher_text(self) -> str:
        """``model (name) @ revision, licence`` or why there is none."""
        if not self.recorded:
            return "not recorded (checkpoint written before leve recorded lineage)"
        if self.teacher is None:
            return "none (trained without distillation)"
        t = self.teacher
        name = f" ({t['name']})" if t.get("name") and t["name"] != t["model"] else ""
        return f"{t['model']}{name} @ {t.get('revision')}, licence {t.get('licence')}"

    def data_text(self) -> str:
        """``name/split (store fingerprint)`` of every dataset split, comma-separated."""
        return ", ".join(f"{d.get('name')}/{d.get('split')} (store {str(d.get('fingerprint'))[:12]})"
                         for d in self.datasets) or "not recorded"

    def synthetic_only(self) -> bool:
        """Whether all this student learnt from is leve's synthetic rooms: only ``synthetic`` data, and the
        ``embedded`` teacher (trained on those rooms) or none. On real photos its depth means little."""
        if not self.recorded or not self.datasets:
            return False
        teacher_synthetic = self.teacher is None or self.teacher.get("model") == "embedded"
        return teacher_synthetic and {d.get("name") for d in self.datasets} == {"synthetic"}

    def synthetic_warning(self, checkpoint: str | Path) -> str | None:
        """The one ``warning:`` line for a synthetic-only student (see :meth:`synthetic_only`), else None."""
        if not self.synthetic_only():
            return None
        return (f"warning: {checkpoint}: trained on leve's synthetic rooms only (data synthetic, teacher "
                f"{'embedded' if self.teacher else 'none'}): on real photos its depth is not meaningful; distil a "
                "student for your images with a real teacher (docs/own-data.md)")

    def summary(self) -> str:
        """One line for ``leve predict``/``leve serve``: teacher, data and the licence; a non-commercial
        student says so first."""
        head = "NON-COMMERCIAL use only: " if self.non_commercial else ""
        teacher = "no teacher (trained without distillation)" if self.recorded and self.teacher is None \
            else f"teacher {self.teacher_text()}"
        return f"{head}{teacher}; data {self.data_text()}; licence {self.licence}"

    def to_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher, "datasets": self.datasets, "encoder_weights": self.encoder_weights,
                "licence": self.licence, "licence_id": self.licence_id, "non_commercial": self.non_commercial,
                "recorded": self.recorded}

    def onnx_metadata(self) -> dict[str, str]:
        """String key/values for an ONNX model's ``metadata_props``."""
        t = self.teacher or {}
        return {"leve_licence": self.licence, "leve_licence_id": self.licence_id,
                "leve_non_commercial": "true" if self.non_commercial else "false",
                "leve_teacher": str(t.get("model", "none")) if self.recorded else "not recorded",
                "leve_teacher_revision": str(t.get("revision", "")),
                "leve_teacher_licence": str(t.get("licence", "")),
                "leve_datasets": self.data_text(),
                "leve_lineage": json.dumps(self.to_dict(), sort_keys=True, default=str)}
