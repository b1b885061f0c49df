"""Data Engineer: inspect the dataset, infer its layout, write and run make_index.py."""

from __future__ import annotations

import pprint
from pathlib import Path

from medbuilder.agents.core import Actor, AgentExit, RoleJob
from medbuilder.agents.roles import layout as layouts
from medbuilder.agents.roles.base import Role, RoleContext
from medbuilder.protocol.checks import check_index

SCRIPT = "make_index.py"
REFERENCE = Path(__file__).resolve().parent / "make_index_reference.py"


def _context(ctx: RoleContext) -> dict:
    card = ctx.card
    return {"request": ctx.request, "task": ctx.plan.task, "dataset": card.name, "dataset_root": str(ctx.dataset_root),
            "dimension": card.dimension, "description": card.description, "label_names": card.label_names,
            "confounders": [c.model_dump() for c in card.confounders],
            "workspace": str(ctx.run.workspace), "script": SCRIPT, "reference_script": str(REFERENCE),
            "feedback": ctx.feedback.text() if ctx.feedback else None}


def _folders(preview, root: str) -> dict[str, list[str]]:
    """Top-level sub-folder name -> its file extensions (from preview_dirs)."""
    found = {}
    for folder in preview.folders:
        rel = Path(folder.folder)
        rel = rel.relative_to(root) if rel.is_absolute() and rel.is_relative_to(root) else rel
        if len(rel.parts) == 1 and str(rel) != ".":
            found[str(rel)] = [f"x{ext}" for ext in folder.extensions]
    return found


def _top_files(preview) -> list[str]:
    top = next((f for f in preview.folders if f.folder in (".", "")), None)
    return top.first_files if top else []


def _infer(act: Actor, values: dict, preview) -> layouts.Layout:
    root, task, names = values["dataset_root"], values["task"], values["label_names"]
    folders, files = _folders(preview, root), _top_files(preview)
    if task in ("diagnosis", "anomaly_detection"):
        found = layouts.folder_per_class(folders, names)
        if found:
            return found
    if task == "segmentation":
        if "dataset.json" in files:
            shown = act.expect("preview_files", "An MSD-style dataset.json?", path=f"{root}/dataset.json", n=20)
            if "training" in shown.result.summary.get("keys", []):
                return layouts.Layout("pairs_json", {"image_key": "image", "mask_key": "label"},
                                      ["dataset.json lists image/label pairs under 'training'"])
        found = layouts.image_mask_folders(folders)
        if found:
            return found
    for table in (f for f in files if f.endswith((".csv", ".tsv"))):
        shown = act.expect("preview_files", f"Does {table} list image paths and labels?", path=f"{root}/{table}", n=20)
        summary = shown.result.summary
        found = layouts.table_layout(table, summary.get("columns", []), summary.get("head", []), task, names,
                                     labels_by_values=values["feedback"] is not None,
                                     confounders=values.get("confounders", []))
        if found:
            return found
    raise AgentExit("exit_error", f"no known layout for {task} under {root}: folders {sorted(folders)}, files {files}")


def policy(job: RoleJob, act: Actor) -> str:
    values = job.context
    preview = act.expect("preview_dirs", "How is the dataset organised?", path=values["dataset_root"])
    found = _infer(act, values, preview.result)
    config = {"root": values["dataset_root"], "task": values["task"], "dimension": values["dimension"],
              "layout": found.kind, "params": found.params, "label_names": values["label_names"],
              "normal_class": layouts.normal_class(values["label_names"])}
    script = REFERENCE.read_text().replace("CONFIG = {}", f"CONFIG = {pprint.pformat(config, sort_dicts=False)}", 1)
    thought = "Layout: " + "; ".join(found.notes)
    act.expect("write_file", thought, path=values["script"], content=script)
    run = act.expect("run_script", "Make the index.", command=f"python {values['script']}")
    act("preview_files", "Check the train index.", path="index/train.json", n=2)
    return f"{'; '.join(found.notes)}. {run.result.output.strip().splitlines()[-1]}"


def check(ctx: RoleContext) -> list[str]:
    report = check_index(ctx.run.index_dir, ctx.plan.task, ctx.dataset_root, ctx.card.label_names,
                         run_id=ctx.run.run_id)
    ctx.run.write("index_report.json", report)
    return report.problems


ROLE = Role(
    name="data_engineer",
    tools=["list_files", "read_files", "preview_dirs", "preview_files", "write_file", "edit_file", "run_script",
           "load_med_data", "check_3D", "verify_report"],
    policy=policy,
    read_roots=lambda ctx: [ctx.dataset_root, REFERENCE.parent],
    check=check,
    context=_context,
)
