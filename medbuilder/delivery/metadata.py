"""A bundle's ``configs/metadata.json``: built from the run's artifacts, checked against two schemas kept here.

- ``monai_meta_schema.json``: MONAI's own bundle metadata schema, byte for byte the file
  ``bundle/schema.json`` of Project-MONAI/MONAI-extra-test-data at commit cecb152 (the
  metadata's ``schema`` field names that URL; its md5 is pinned below and checked). The bundle
  carries it as ``configs/schema.json``, so MONAI's ``verify_metadata`` passes offline:
  ``python -m monai.bundle verify_metadata --meta_file configs/metadata.json
  --filepath configs/schema.json --hash_val <MONAI_SCHEMA_MD5>`` (the file is there, so nothing is
  downloaded). The newer release asset model-zoo bundles name (meta_schema_20240725.json) is
  not reachable from these machines.
- ``metadata_schema.json``: medbuilder's stricter schema (see its ``$comment``), checked by
  :func:`validate_metadata` with jsonschema before a bundle is written.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parent / "metadata_schema.json"
MONAI_SCHEMA_FILE = Path(__file__).resolve().parent / "monai_meta_schema.json"
MONAI_SCHEMA_URL = ("https://raw.githubusercontent.com/Project-MONAI/MONAI-extra-test-data/"
                    "cecb1523f682af3119698c5da35d2fc0e39ab8c4/bundle/schema.json")
MONAI_SCHEMA_MD5 = "b11acc946148c0186924f8234562b947"
MODALITY = {"mri": "MR", "mr": "MR", "ct": "CT", "x-ray": "XR", "xray": "XR", "ultrasound": "US", "us": "US"}
TASK_TEXT = {"diagnosis": "image classification (diagnosis)", "segmentation": "segmentation",
             "anomaly_detection": "unsupervised anomaly detection", "report_generation": "report generation"}
# what a bundle needs beyond the packages its scripts/ import (found by bundle_imports): MONAI's image readers,
# its SupervisedEvaluator (configs/inference.json) and its command line (python -m monai.bundle)
WORKFLOW_PACKAGES = ("pillow", "nibabel", "pytorch-ignite", "fire")
BASE_PACKAGES = ("torch", "numpy", "monai")  # their versions have their own fields


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


def bundle_imports(scripts_dir: Path) -> list[str]:
    """Distributions the bundle's scripts import (ast of every .py; stdlib, MONAI's base and the scripts' own
    modules left out), plus WORKFLOW_PACKAGES; sorted. An import no installed distribution provides is named."""
    import ast
    import sys

    scripts = sorted(Path(scripts_dir).glob("*.py"))
    own = {p.stem for p in scripts}
    names = set()
    for script in scripts:
        for node in ast.walk(ast.parse(script.read_text(), filename=str(script))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    providers = importlib_metadata.packages_distributions()
    found = set(WORKFLOW_PACKAGES)
    for name in names - own - set(sys.stdlib_module_names) - {"__future__"}:
        if name not in providers:
            raise MetadataError(f"the bundle's scripts import {name!r}, which no installed package provides")
        found.update(d.lower() for d in providers[name])
    return sorted(found - set(BASE_PACKAGES))


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
        return {"inputs": {"image": image}, "outputs": {"pred": recon},
                "post_processed_outputs": {"score": score}}
    if task == "report_generation":
        vocab = len(extras.get("vocab") or [])
        logits = _tensor("series", "sequence", vocab, ["*"], "float32", [],
                         {"*": "greedy decoding: the next-word logits over the vocabulary (channels) of each step"})
        words = _tensor("series", "sequence", 1, ["*"], "int64", [0, max(0, vocab - 1)],
                        {0: "greedy-decoded word ids (models/model_extras.json 'vocab'), ending at <eos>"})
        return {"inputs": {"image": image}, "outputs": {"pred": logits}, "post_processed_outputs": {"report": words}}
    raise ValueError(f"unknown task {task!r}")


def build_metadata(*, task: str, cfg: dict, extras: dict, class_names: list[str], metrics: dict, card: dict,
                   request: str, run_id: str, round_k: int, changelog: dict[str, str], approved_by: str | None,
                   template: dict[str, Any], packages: list[str]) -> dict:
    """metadata.json for the bundle of round ``round_k``; every value comes from the run's artifacts.
    ``packages``: what the bundle needs installed (bundle_imports); listed with their versions both as
    required_packages_version (MONAI's current field) and optional_packages_version (the field MONAI's
    own schema requires and older MONAI tools read)."""
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
        "required_packages_version": {p: _version(p) for p in packages},
        "optional_packages_version": {p: _version(p) for p in packages},
        "task": f"{TASK_TEXT[task]} of {card.get('modality', '')} {card.get('anatomy', '')} images "
                f"({card.get('title', card.get('name', ''))})".replace("  ", " "),
        "description": f"Trained by medbuilder (run {run_id}, round {round_k}) from the template "
                       f"'{template.get('template')}' {template.get('version', '')} for the request: {request!r}. "
                       f"See docs/README.md (the model card) for data, metrics with 95% intervals and limits.",
        "authors": "medbuilder automated build" + (f"; approved by {approved_by}" if approved_by else ""),
        "authorship": "medbuilder automated build" + (f"; approved by {approved_by}" if approved_by else ""),
        "copyright": f"Weights trained on {card.get('name')} ({card.get('licence', 'licence not stated')})",
        "data_source": f"{card.get('title', card.get('name'))} ({data_kind} data); source: {card.get('source', '')}",
        "data_type": ", ".join(card.get("file_formats") or []) or "unknown",
        "dataset_dir": "any folder of input images: python -m monai.bundle run --config_file configs/inference.json "
                       "--dataset_dir FOLDER (or --input_files \"['a.png']\"); results in eval/predictions.jsonl",
        "image_classes": _image_classes(cfg, modality),
        "label_classes": _label_classes(task, class_names, card),
        "pred_classes": ", ".join(f"{i} = {name}" for i, name in enumerate(class_names)) or _label_classes(
            task, class_names, card),
        "intended_use": "Research and teaching only. Not a medical device: not for diagnosis or treatment of patients.",
        "eval_metrics": eval_metrics,
        "network_data_format": network_data_format(task, cfg, extras, class_names, modality),
        "medbuilder": {"run_id": run_id, "round": round_k, "task": task, "template": template,
                       "dataset": card.get("name"), "provenance": card.get("provenance")},
    }
    return meta


def _image_classes(cfg: dict, modality: str) -> str:
    cin = int(cfg.get("in_channels", 1))
    kind = "single channel (grey)" if cin == 1 else f"{cin} channels (RGB)"
    return f"{modality} images, {kind}, resampled and scaled as in training (scripts/dataloader.py)"


def _label_classes(task: str, class_names: list[str], card: dict) -> str:
    if task == "report_generation":
        return "report text (findings and impression), tokenised with the training vocabulary"
    if task == "anomaly_detection":
        return f"none: trained on normal images only ({card.get('name')}); the score is the reconstruction error"
    return ", ".join(f"{i} = {name}" for i, name in enumerate(class_names))
