"""A bundle's ``configs/metadata.json``: built from the run's artifacts, checked against a schema kept here.

MONAI's ``verify_metadata`` downloads the schema named in the metadata and fails
offline, so :func:`validate_metadata` checks against ``metadata_schema.json`` in this
package (a hand-written copy of MONAI's meta schema, slightly stricter; see its
``$comment``) with jsonschema.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parent / "metadata_schema.json"
# what metadata.json names in its "schema" field (MONAI's own schema; validated offline against SCHEMA_FILE)
MONAI_SCHEMA_URL = ("https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
                    "meta_schema_20240725.json")
MODALITY = {"mri": "MR", "mr": "MR", "ct": "CT", "x-ray": "XR", "xray": "XR", "ultrasound": "US", "us": "US"}
TASK_TEXT = {"diagnosis": "image classification (diagnosis)", "segmentation": "segmentation",
             "anomaly_detection": "unsupervised anomaly detection", "report_generation": "report generation"}
# packages the scripts/ code imports beyond MONAI's base requirements (torch, numpy)
PACKAGES = {"diagnosis": ["pillow", "nibabel", "pyyaml"], "anomaly_detection": ["pillow", "nibabel", "pyyaml"],
            "segmentation": ["pillow", "nibabel", "pyyaml"], "report_generation": ["pillow", "pyyaml"]}


class MetadataError(ValueError):
    """metadata.json does not follow the schema; the message names the field."""


@lru_cache(maxsize=1)
def load_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def validate_metadata(meta: dict) -> None:
    """Raise MetadataError naming the first field that breaks the schema (jsonschema, no download)."""
    import jsonschema

    validator = jsonschema.Draft201909Validator(load_schema())
    errors = sorted(validator.iter_errors(meta), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise MetadataError(f"metadata.json field '{where}': {first.message} "
                            f"(schema {SCHEMA_FILE.name}; {len(errors)} problem(s) in all)")


def _version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _tensor(type_: str, format_: str, channels: int, shape: list, dtype: str, value_range: list,
            channel_def: dict, patch: bool = False, modality: str = "n/a") -> dict:
    return {"type": type_, "format": format_, "modality": modality, "num_channels": int(channels),
            "spatial_shape": list(shape), "dtype": dtype, "value_range": list(value_range),
            "is_patch_data": patch, "channel_def": {str(k): v for k, v in channel_def.items()}}


def network_data_format(task: str, cfg: dict, extras: dict, class_names: list[str], modality: str) -> dict:
    """Inputs and outputs of the network (and the predictor's post-processed outputs)."""
    cin = int(cfg.get("in_channels", 1))
    image_def = {0: "grey image"} if cin == 1 else {0: "red", 1: "green", 2: "blue"}
    size = list(cfg.get("image_size") or [])
    if task == "segmentation":
        patch = cfg.get("patch_size")
        shape = list(patch) if patch else (size or ["16*n"] * int(cfg["spatial_dims"]))
        n = int(cfg["num_classes"])
        image = _tensor("image", "magnitude", cin, shape, "float32", [0, 1] if cfg.get("intensity") != "zscore" else [],
                        image_def, patch=bool(patch), modality=modality)
        logits = _tensor("image", "labels", n, shape, "float32", [], dict(enumerate(class_names)), patch=bool(patch))
        seg = _tensor("image", "segmentation", 1, ["*"] * int(cfg["spatial_dims"]), "uint8", [0, n - 1],
                      {0: "label index per voxel, in the input image's grid: " + ", ".join(
                          f"{i} = {name}" for i, name in enumerate(class_names))})
        return {"inputs": {"image": image}, "outputs": {"pred": logits}, "post_processed_outputs": {"mask": seg}}
    image = _tensor("image", "magnitude", cin, size, "float32", [0, 1], image_def, modality=modality)
    if task == "diagnosis":
        n = int(cfg["num_classes"])
        logits = _tensor("probabilities", "classes", n, [], "float32", [], dict(enumerate(class_names)))
        probs = _tensor("probabilities", "classes", n, [], "float32", [0, 1], dict(enumerate(class_names)))
        return {"inputs": {"image": image}, "outputs": {"pred": logits}, "post_processed_outputs": {"probabilities": probs}}
    if task == "anomaly_detection":
        recon = _tensor("image", "magnitude", cin, size, "float32", [0, 1], {0: "reconstruction of the input"})
        score = _tensor("series", "anomaly_score", 1, [1], "float32", [],
                        {0: f"reconstruction error ({cfg.get('score', 'mse')}); higher = more anomalous"})
        return {"inputs": {"image": image}, "outputs": {"reconstruction": recon},
                "post_processed_outputs": {"score": score}}
    if task == "report_generation":
        vocab = len(extras.get("vocab") or [])
        logits = _tensor("series", "sequence", vocab, ["*"], "float32", [], {"*": "next-word logits over the vocabulary"})
        words = _tensor("series", "sequence", 1, ["*"], "int64", [0, max(0, vocab - 1)],
                        {0: "greedy-decoded word ids (models/model_extras.json 'vocab'), ending at <eos>"})
        return {"inputs": {"image": image}, "outputs": {"pred": logits}, "post_processed_outputs": {"report": words}}
    raise ValueError(f"unknown task {task!r}")


def build_metadata(*, task: str, cfg: dict, extras: dict, class_names: list[str], metrics: dict, card: dict,
                   request: str, run_id: str, round_k: int, changelog: dict[str, str], approved_by: str | None,
                   template: dict[str, Any]) -> dict:
    """metadata.json for the bundle of round ``round_k``; every value comes from the run's artifacts."""
    import monai
    import numpy
    import torch

    modality = MODALITY.get(str(card.get("modality", "")).lower(), card.get("modality") or "n/a")
    data_kind = "GENERATED" if card.get("provenance") == "generated" else "real"
    metric, value, ci = metrics.get("metric"), metrics.get("value"), metrics.get("ci95")
    eval_metrics: dict[str, Any] = {metric: value, f"{metric}_ci95": ci, "n_test": metrics.get("n_test")}
    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "bleu1", "bleu4", "exact_match"):
        if metrics.get(key) is not None:
            eval_metrics[key] = metrics[key]
    meta = {
        "schema": MONAI_SCHEMA_URL,
        "version": f"1.{round_k}.0",
        "changelog": changelog,
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {p: _version(p) for p in PACKAGES[task]},
        "task": f"{TASK_TEXT[task]} of {card.get('modality', '')} {card.get('anatomy', '')} images "
                f"({card.get('title', card.get('name', ''))})".replace("  ", " "),
        "description": f"Trained by medbuilder (run {run_id}, round {round_k}) from the template "
                       f"'{template.get('template')}' {template.get('version', '')} for the request: {request!r}. "
                       f"See docs/README.md (the model card) for data, metrics with 95% intervals and limits.",
        "authors": "medbuilder automated build" + (f"; approved by {approved_by}" if approved_by else ""),
        "copyright": f"Weights trained on {card.get('name')} ({card.get('licence', 'licence not stated')})",
        "data_source": f"{card.get('title', card.get('name'))} ({data_kind} data); source: {card.get('source', '')}",
        "data_type": ", ".join(card.get("file_formats") or []) or "unknown",
        "intended_use": "Research and teaching only. Not a medical device: not for diagnosis or treatment of patients.",
        "eval_metrics": eval_metrics,
        "network_data_format": network_data_format(task, cfg, extras, class_names, modality),
        "medbuilder": {"run_id": run_id, "round": round_k, "task": task, "template": template,
                       "dataset": card.get("name"), "provenance": card.get("provenance")},
    }
    if class_names:
        meta["pred_classes"] = ", ".join(f"{i} = {name}" for i, name in enumerate(class_names))
    return meta
