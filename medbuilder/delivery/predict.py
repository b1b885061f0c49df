"""Predict with a run's delivered model: the bundle loaded with MONAI's ConfigParser.

``predict_run(run_root, files)`` is what ``medbuilder predict RUN FILE...`` calls. Nothing
of the run's workspace is imported: the predictor is built from ``bundle/configs/
inference.json`` as a MONAI user would, except that its ``scripts_dir`` points at medbuilder's
own template code (checked to equal the bundle's scripts) holding the bundle's config.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from medbuilder.delivery.bundle import BUNDLE
from medbuilder.protocol.untrusted import copy_nofollow
from medbuilder.review.trusted_code import TRUSTED_CODE, stage_trusted_code


class NoBundleError(FileNotFoundError):
    """The run has no delivered model yet."""


class BundleLoadError(RuntimeError):
    """The bundle's inference.json could not be turned into a predictor."""


def bundle_dir(run_root: Path | str) -> Path:
    """The run's bundle folder; NoBundleError (saying what to do) when it has none."""
    run_root = Path(run_root).resolve()
    bundle = run_root / BUNDLE
    if not (bundle / "configs" / "inference.json").is_file():
        raise NoBundleError(f"run {run_root.name} has no delivered model ({bundle / 'configs' / 'inference.json'} "
                            f"is missing): approve its review gate first (`medbuilder approve {run_root.name}`), or "
                            f"deliver an evaluated round with `medbuilder stage {run_root.name} deliver --round K`")
    return bundle


def load_bundle(bundle: Path | str, output_dir: Path | str | None = None, device: str | None = None):
    """The bundle's ``predictor`` (the template's Predictor) via ConfigParser on configs/inference.json.

    ``output_dir`` (segmentation: where mask files go) and ``device`` override the
    config's values when given.
    """
    from monai.bundle import ConfigParser

    bundle = Path(bundle).resolve()
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    parser["scripts_dir"] = str(_trusted_scripts(bundle))
    if output_dir is not None and "output_dir" in parser:
        parser["output_dir"] = str(Path(output_dir).resolve())
    if device is not None:
        parser["device"] = f"$torch.device({device!r})"
    try:
        return parser.get_parsed_content("predictor")
    except Exception as err:
        raise BundleLoadError(f"the bundle {bundle} did not load (configs/inference.json, item 'predictor'): "
                              f"{err}; re-export it with `medbuilder stage RUN deliver --round K`") from err


def _trusted_scripts(bundle: Path) -> Path:
    """medbuilder's own template code with the bundle's config.json, in place of the bundle's scripts/ (which
    came from an agent-writable workspace); EditedCodeError when those scripts are not the template's code."""
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    task = metadata.get("medbuilder", {}).get("task")
    target = stage_trusted_code(task, bundle / "scripts", bundle.parent / TRUSTED_CODE / f"bundle-{task}")
    copy_nofollow(bundle / "scripts", "config.json", target / "config.json")
    return target


def predict_run(run_root: Path | str, files, output_dir: Path | str | None = None,
                device: str | None = None) -> list[dict]:
    """Predictions of the run's delivered model for ``files``, one dict per file, in order.

    Segmentation masks go to ``output_dir`` (default ``runs/<id>/predictions/``). Raises
    NoBundleError (a FileNotFoundError) when the run has no bundle, FileNotFoundError
    naming any file that does not exist, and ValueError naming a file that cannot be read.
    """
    run_root = Path(run_root).resolve()
    bundle = bundle_dir(run_root)
    paths = [Path(f).expanduser().resolve() for f in files]
    if not paths:
        raise ValueError("no files given: name the images or volumes to predict on")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"file(s) not found: {', '.join(missing)}")
    predictor = load_bundle(bundle, output_dir=output_dir or run_root / "predictions", device=device)
    return predict_with_store(predictor, [str(p) for p in paths])


def predict_with_store(predictor, paths: list[str], settings=None) -> list[dict]:
    """predictor.predict(paths), reading the images medbuilder's store holds for this model's preprocessing
    instead of preparing them again (a diagnosis model; the same network step, one file at a time)."""
    import torch

    from medbuilder.cache.lookup import stored_images

    stored = stored_images(predictor, paths, settings) if getattr(predictor, "task", None) == "diagnosis" else {}
    if not stored:
        return predictor.predict(paths)
    out = []
    for path in paths:
        if path not in stored:
            out.extend(predictor.predict([path]))
            continue
        with torch.no_grad():
            output = predictor.infer(stored[path].unsqueeze(0).to(predictor.device))[0]
        out.append(predictor.entry(path, output, {"image": stored[path]}))
    return out
