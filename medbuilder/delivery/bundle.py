"""Export an approved training round as a MONAI bundle: ``runs/<id>/bundle/``.

Bundle layout (MONAI Bundle Specification)::

    bundle/
      configs/metadata.json     versions, packages, task, data, intended use, network_data_format (schema-checked)
      configs/inference.json    MONAI's inference workflow: dataset, inferer, evaluator, initialize/run/finalize,
                                and the template's predictor
      configs/schema.json       MONAI's metadata schema (see delivery/metadata.py), for verify_metadata offline
      configs/logging.conf      MONAI's usual logging config
      models/model.pt           the network's state dict (torch.load(..., weights_only=True))
      models/model_extras.json  what the checkpoint held besides weights: epoch, label_dict / vocab /
                                normal_label, class_names
      scripts/                  the template code that trained the model (dataloader.py, model.py, ...,
                                predict.py) and config.json, the round's training config
      docs/README.md            the model card

Run it with MONAI's tools alone (nothing of medbuilder or of the workspace is needed), from the bundle folder::

    python -m monai.bundle run --config_file configs/inference.json --dataset_dir FOLDER   # or --input_files "['a.png']"
    # -> eval/predictions.jsonl, one JSON line per file (segmentation: masks in eval/ too)
    python -m monai.bundle verify_metadata --meta_file configs/metadata.json --filepath configs/schema.json
    python -m monai.bundle verify_net_in_out --net_id network_def --meta_file configs/metadata.json \\
        --config_file configs/inference.json

or in Python::

    from monai.bundle import ConfigParser
    parser = ConfigParser()
    parser.read_config("bundle/configs/inference.json")
    parser["bundle_root"] = "bundle"            # the folder; "." (the default) when run from inside it
    predictor = parser.get_parsed_content("predictor")
    predictor.predict(["image.jpg"])            # list of dicts, one per file
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from medbuilder.delivery.metadata import MONAI_SCHEMA_FILE, build_metadata, bundle_imports, validate_metadata
from medbuilder.protocol.untrusted import UntrustedFileError, copy_nofollow

BUNDLE = "bundle"
ROUND_FILES = ("metrics.json", "config.json", "checkpoints/model.pt")
SCRIPT_SUFFIXES = (".py", ".yaml")
# MONAI's usual logging config (as in model-zoo bundles): INFO to stdout
LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


class BundleError(RuntimeError):
    """The round cannot be exported; the message says what is missing and what to run."""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def inference_config(task: str, extras: dict, class_names: list[str], point: dict | None = None,
                     calibration: dict | None = None) -> dict:
    """configs/inference.json, MONAI's standard inference workflow (``python -m monai.bundle run``).

    Every object is built from scripts/ (the template's predict.py): its Predictor holds the preprocessing,
    the network step and the result of each file; the workflow runs them as MONAI's Dataset, DataLoader,
    inferer and a SupervisedEvaluator whose postprocessing writes one JSON line per input file to
    ``output_dir``/predictions.jsonl. A diagnosis model's operating point (the threshold approved at review) and
    temperature (when calibration was asked for) go to its predictor: the threshold is carried onto the
    calibrated probabilities, so calls do not change."""
    network_def = {"_target_": "$@template['build_model']", "cfg": "@train_config"}
    if task == "report_generation":
        network_def["vocab_size"] = len(extras["vocab"])
    predictor = {"_target_": "$@template['Predictor']", "cfg": "@train_config", "network": "@network",
                 "checkpoint": "@checkpoint", "device": "@device", "preprocessing": "@preprocessing"}
    config = {
        "bundle_root": ".",
        "scripts_dir": "$@bundle_root + '/scripts'",
        "ckpt_path": "$@bundle_root + '/models/model.pt'",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "dataset_dir": "$@bundle_root + '/inputs'",
        "input_files": [],
        "output_dir": "$@bundle_root + '/eval'",
        "template": {"_target_": "runpy.run_path", "path_name": "$@scripts_dir + '/predict.py'",
                     "_desc_": "the template's predict.py run from scripts/; it imports its sibling modules"},
        "train_config": "$@template['read_config'](@scripts_dir + '/config.json')",
        "checkpoint": "$@template['read_checkpoint'](@ckpt_path)",
        "network_def": network_def,
        "network": "$@template['load_weights'](@network_def, @checkpoint).to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": "$@template['inference_transforms'](@train_config)",
                          "_desc_": "the training chain's deterministic transforms"},
        "predictor": predictor,
        "datalist": "$@template['input_datalist'](@dataset_dir, @input_files)",
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": {"_target_": "$@template['PredictorInferer']", "predictor": "@predictor",
                    "_desc_": "the predictor's network step (Predictor.infer)"},
        "writer": {"_target_": "$@template['WritePredictiond']", "output_dir": "@output_dir"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "$@template['PredictionEntryd']", "predictor": "@predictor"}, "@writer"]},
        "handlers": [],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": False},
        "initialize": [],
        "run": ["$@template['require_inputs'](@datalist, @dataset_dir)", "$@writer.start()", "$@evaluator.run()"],
        "finalize": ["$print('predictions of', len(@datalist), 'file(s) in', @writer.path)"],
        "predictions": "$@predictor.predict(@input_files)",
    }
    if task == "diagnosis" and point:
        config["operating_point"] = {"threshold": point["threshold"], "how": point["how"],
                                     "sensitivity": point["sensitivity"], "specificity": point["specificity"],
                                     "_desc_": f"a case is called {point['positive_label']} when its probability "
                                               "is at least the threshold (approved at the review gate)"}
        predictor["threshold"] = "@operating_point#threshold"
    if task == "diagnosis" and calibration:
        from medbuilder.review.temperature import carried_threshold

        t = float(calibration["temperature"])
        config["calibration"] = {"temperature": t, "fitted_on": calibration["fitted_on"],
                                 "test_ece": calibration["test"],
                                 "_desc_": "probabilities are softmax(logits / temperature)"}
        predictor["temperature"] = "@calibration#temperature"
        if point:
            config["operating_point"]["threshold"] = carried_threshold(point["threshold"], t)
            config["operating_point"]["threshold_before_calibration"] = point["threshold"]
    if task == "segmentation":
        predictor["output_dir"] = "@output_dir"
        predictor["class_names"] = list(class_names)
    return config


def approved_operating_point(run_root: Path, round_k: int) -> dict | None:
    """operating_point.json when it was stored for this round at its approval."""
    point = _read_json(Path(run_root) / "operating_point.json")
    return point if point and point.get("round") == round_k else None


def _class_names(task: str, cfg: dict, extras: dict, card: dict, index_dir: Path) -> list[str]:
    if task == "diagnosis" and extras.get("label_dict"):
        return [n for n, _ in sorted(extras["label_dict"].items(), key=lambda kv: kv[1])]
    if task == "segmentation":
        labels = _read_json(index_dir / "label_dict.json", {}) or {}
        n = int(cfg["num_classes"])
        if len(labels) == n:
            return [name for name, _ in sorted(labels.items(), key=lambda kv: kv[1])]
        names = list(card.get("label_names") or [])
        if len(names) == n:
            return names
        return ["background"] + [f"class_{c}" for c in range(1, n)]
    if task == "anomaly_detection":
        return ["normal", "anomalous"]
    return []


def _script_sources(run_root: Path, task: str) -> dict[str, tuple[Path, str]]:
    """scripts/ name -> source: the workspace's template code (what trained the model), and the
    template's own copy for any file the workspace lacks (e.g. predict.py in an older workspace)."""
    from medbuilder.protocol.templates.spec import COMMON_DIR, get_template

    spec = get_template(task)
    template = {p.name: p for p in spec.folder.iterdir() if p.is_file() and p.suffix in SCRIPT_SUFFIXES}
    template.update({p.name: p for p in COMMON_DIR.glob("*.py")})
    workspace = run_root / "workspace"
    sources = {}
    for name, path in sorted(template.items()):
        present = os.path.lexists(workspace / name)  # a link there is refused when copied, never followed
        sources[name] = (workspace / name, "workspace") if present else (path, "template")
    return sources


def _changelog(run_root: Path, round_k: int, approved: dict | None) -> dict[str, str]:
    log = {}
    for j in range(round_k + 1):
        metrics = _read_json(run_root / "rounds" / str(j) / "metrics.json")
        if metrics is None:
            continue
        ci = metrics.get("ci95") or [None, None]
        text = f"round {j}: {metrics.get('metric')} {metrics.get('value')} (95% CI {ci[0]} to {ci[1]})"
        refinement = _read_json(run_root / "refinements" / f"round-{j}.json")
        if refinement and refinement.get("feedback"):
            text += f"; refined after feedback: {refinement['feedback']}"
        log[f"1.{j}.0"] = text
    if approved:
        log[f"1.{round_k}.0"] += (f"; approved by {approved.get('who')} via {approved.get('via')} "
                                  f"on {approved.get('when')}")
    return dict(sorted(log.items(), key=lambda kv: int(kv[0].split(".")[1]), reverse=True))


def export_bundle(run_root: Path, round_k: int, card_text: str) -> Path:
    """Write ``runs/<id>/bundle/`` for round ``round_k`` (replacing an older bundle) and return it.

    The bundle is assembled beside the old one and swapped in only when complete, and its
    metadata is checked against the schema first (MetadataError names the field).
    """
    import torch

    run_root = Path(run_root).resolve()
    round_dir = run_root / "rounds" / str(round_k)
    missing = [rel for rel in ROUND_FILES if not (round_dir / rel).is_file()]
    if missing:
        raise BundleError(f"round {round_k} of run {run_root.name} lacks {missing} in {round_dir}: evaluate the "
                          f"round first (`medbuilder stage {run_root.name} evaluate --round {round_k}`)")
    metrics = _read_json(round_dir / "metrics.json")
    cfg = _read_json(round_dir / "config.json")
    fill = _read_json(round_dir / "template_fill.json", {}) or {}
    task = metrics.get("task") or fill.get("task")
    card = _read_json(run_root / "datacard.json", {}) or {}
    request = (_read_json(run_root / "request.json", {}) or {}).get("text", "")
    approved = _read_json(run_root / "decisions" / f"review-{round_k}.json")
    checkpoint = torch.load(round_dir / "checkpoints" / "model.pt", map_location="cpu", weights_only=True)
    extras = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "config")}
    if task == "report_generation" and not extras.get("vocab"):
        vocab_file = run_root / "workspace" / (cfg.get("output_dir") or ".") / "vocab.json"
        if not vocab_file.is_file():
            raise BundleError(f"round {round_k}'s checkpoint has no vocabulary and {vocab_file} is missing: "
                              f"retrain the round (train.py saves the vocabulary in the checkpoint)")
        extras["vocab"] = json.loads(vocab_file.read_text())
    class_names = _class_names(task, cfg, extras, card, Path(cfg.get("index_dir") or run_root / "workspace" / "index"))
    if task == "segmentation":
        extras["class_names"] = class_names

    staging = run_root / f"{BUNDLE}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for sub in ("configs", "models", "scripts", "docs"):
        (staging / sub).mkdir(parents=True)
    torch.save(checkpoint["state_dict"], staging / "models" / "model.pt")
    (staging / "models" / "model_extras.json").write_text(json.dumps(extras, indent=1))
    files = {}
    for name, (source, origin) in _script_sources(run_root, task).items():
        try:
            copy_nofollow(source.parent, source.name, staging / "scripts" / name)
        except UntrustedFileError as err:
            raise BundleError(f"the bundle's {name} cannot be copied: {err}; write it as a plain file") from None
        digest, filled = _sha(staging / "scripts" / name), (fill.get("files") or {}).get(name)
        files[name] = {"sha256": digest, "from": origin, "edited_after_fill": bool(filled) and filled != digest}
    (staging / "scripts" / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    template = {"template": fill.get("template", task), "version": fill.get("version", ""), "files": files}
    meta = build_metadata(task=task, cfg=cfg, extras=extras, class_names=class_names, metrics=metrics, card=card,
                          request=request, run_id=run_root.name, round_k=round_k,
                          changelog=_changelog(run_root, round_k, approved),
                          approved_by=(approved or {}).get("who"), template=template,
                          packages=bundle_imports(staging / "scripts"))
    validate_metadata(meta)
    (staging / "configs" / "metadata.json").write_text(json.dumps(meta, indent=1))
    shutil.copyfile(MONAI_SCHEMA_FILE, staging / "configs" / "schema.json")
    (staging / "configs" / "logging.conf").write_text(LOGGING_CONF)
    point = approved_operating_point(run_root, round_k)
    calibration = _read_json(run_root / "calibration.json")
    calibration = calibration if calibration and calibration.get("round") == round_k else None
    (staging / "configs" / "inference.json").write_text(
        json.dumps(inference_config(task, extras, class_names, point, calibration), indent=1))
    (staging / "docs" / "README.md").write_text(card_text)

    bundle = run_root / BUNDLE
    shutil.rmtree(bundle, ignore_errors=True)
    staging.rename(bundle)
    return bundle


def check_bundle(bundle: Path) -> list[str]:
    """Problems with a bundle folder (missing files, metadata against the schema); [] when sound."""
    from medbuilder.delivery.metadata import MetadataError

    bundle = Path(bundle)
    problems = [f"{rel} is missing" for rel in ("configs/metadata.json", "configs/inference.json", "models/model.pt",
                                                "scripts/predict.py", "scripts/config.json", "docs/README.md")
                if not (bundle / rel).is_file()]
    if (bundle / "configs" / "metadata.json").is_file():
        try:
            validate_metadata(json.loads((bundle / "configs" / "metadata.json").read_text()))
        except MetadataError as err:
            problems.append(str(err))
    return problems
