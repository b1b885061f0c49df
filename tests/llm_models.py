"""Scripted models for the wire endpoint (tests/wire_endpoint.py): a competent one and a broken one.

They decide from the request alone, as a model does: the role from the system prompt, the step from
the assistant turns so far, paths and numbers from the brief and from the tool results. The
competent model plays all four roles and behaves as a careful small model would: parallel calls,
only the data keys in config.json (medbuilder fills the rest), a paged read of a long file, usage
reported only on each role's last reply. The broken model fails the Task Manager three ways, one
per attempt: too many parallel calls, replies that cannot be read, a summary with no plan.
"""

from __future__ import annotations

import json
import re
from typing import Any

from wire_endpoint import says, tool_call

BATCH_CHECK = "python dataloader.py --config config.json"
TRAIN = "python train.py --config config.json"
ROLES = {"Task Manager": "task_manager", "Data Engineer": "data_engineer", "Module Architect": "module_architect",
         "Model Trainer": "model_trainer"}


def role_of(body: dict) -> str:
    system = body["messages"][0]["content"]
    return next(role for words, role in ROLES.items() if f"You are the {words}" in system)


def turn_of(body: dict) -> int:
    """How many replies this attempt has had before this request."""
    return sum(1 for m in body["messages"] if m["role"] == "assistant")


def tool_results(body: dict) -> list[str]:
    """The tool results of the last turn, in call order."""
    results = []
    for message in reversed(body["messages"]):
        if message["role"] != "tool":
            break
        results.insert(0, message["content"])
    return results


def page_text(result: str) -> str:
    """A read_files page without its header line and its 'more lines' note."""
    body = result.split("=====\n", 1)[1]
    return re.sub(r"\n\[\.\.\. \d+ more lines .*\]$", "", body)


def listed_names(result: str) -> list[str]:
    return [line.split("  ")[0].rstrip("/") for line in result.splitlines()[1:] if line.strip()]


def competent(body: dict) -> dict:
    return {"task_manager": _task_manager, "data_engineer": _data_engineer, "module_architect": _module_architect,
            "model_trainer": _model_trainer}[role_of(body)](body, turn_of(body))


def _brief(body: dict) -> str:
    return body["messages"][1]["content"]


def _task_manager(body: dict, turn: int) -> dict:
    cards = re.search(r"Datacards folder: (\S+)", _brief(body)).group(1)
    if turn == 0:
        return says("Which datacards are there?", tool_call("list_files", path=cards))
    if turn == 1:
        names = [n for n in listed_names(tool_results(body)[0]) if n.endswith((".yaml", ".yml"))]
        return says("Reading every datacard.", tool_call("read_files", paths=[f"{cards}/{n}" for n in names]))
    if turn == 2:
        card_page = next(page for page in tool_results(body)[0].split("===== ") if page.startswith(f"{cards}/br35h.yaml"))
        more = re.search(r"call read_files with offset=(\d+)", card_page)
        if more:  # the page of the card that fits was cut: read on from where it stopped
            return says("Reading the rest of the Br35H card.",
                        tool_call("read_files", paths=[f"{cards}/br35h.yaml"], offset=int(more.group(1))))
    if "plan.json" not in json.dumps(body["messages"][-2].get("tool_calls", [])):
        plan = {"status": "ok", "request": re.search(r'request: "(.*)"', _brief(body)).group(1), "dataset": "br35h",
                "task": "diagnosis", "dimension": "2D", "metric": "auroc",
                "reasons": ["Br35H holds brain MRI slices labelled tumour / no tumour"],
                "candidates": [{"name": "br35h", "score": 1.0, "fits": True, "reasons": ["brain MRI, two classes"]}],
                "steps": ["index the class folders", "fill the diagnosis template", "train and report AUROC"]}
        return says("Br35H fits.", tool_call("write_file", path="plan.json", content=json.dumps(plan)))
    return says("Chose br35h for diagnosis (AUROC).", usage=(5200, 60))


def _data_engineer(body: dict, turn: int) -> dict:
    root = re.search(r"Work out the layout of \S+ \((\S+)\)", _brief(body)).group(1)
    layout = {"task": "diagnosis", "images": {"roots": ["."]}, "label": {"kind": "folder", "depth": 0}}
    if turn == 0:
        return says("How is it organised?", tool_call("preview_dirs", path=root))
    if turn == 1:
        return says("One folder per class.", tool_call("apply_layout", layout=layout))
    if turn == 2:
        return says(None, tool_call("apply_layout", layout=layout, submit=True))
    return says("Layout submitted: class folders no/ and yes/.", usage=(4100, 30))


def _module_architect(body: dict, turn: int) -> dict:
    system = body["messages"][0]["content"]
    template, common = re.search(r"The template is in (\S+) \(read only\) and its shared\s+helpers in (\S+)\. ",
                                 system).groups()
    index_dir = re.search(r"from the index in (\S+)\.$", _brief(body), re.M).group(1)
    if turn == 0:
        return says("What do the template and the helpers hold?", tool_call("list_files", path=template),
                    tool_call("list_files", path=common))
    if turn == 1:
        listed = tool_results(body)
        sources = [f"{template}/{n}" for n in listed_names(listed[0]) if n != "__pycache__"]
        sources += [f"{common}/{n}" for n in listed_names(listed[1]) if n.endswith(".py")]
        return says("Copying the template.", tool_call("copy_files", sources=sources, destination="."),
                    tool_call("read_files", paths=[f"{template}/template.yaml"]))
    if turn == 2:
        config = {"index_dir": index_dir, "spatial_dims": 2, "in_channels": 1, "num_classes": 2, "image_size": [64, 64]}
        return says("Only the data keys; the rest stay at their defaults.",
                    tool_call("write_file", path="config.json", content=json.dumps(config, indent=1)))
    if turn == 3:
        return says(None, tool_call("run_script", command=BATCH_CHECK))
    return says("Filled the diagnosis template (64x64 grey, 2 classes). Batch check passed.", usage=(9000, 80))


def _model_trainer(body: dict, turn: int) -> dict:
    system = body["messages"][0]["content"]
    if turn == 0:
        return says("Current configuration and data size.", tool_call("read_files", paths=["config.json"]),
                    tool_call("preview_files", path="index/train.json", n=2))
    if turn == 1:
        config = json.loads(page_text(tool_results(body)[0]))
        epochs = re.search(r"Set epochs to (\d+)", system)
        limit = re.search(r"Set time_limit_s to (\d+(?:\.\d+)?)", system)
        config.update(epochs=int(epochs.group(1)) if epochs else 2, batch_size=8, lr=0.002, val_fraction=0.0)
        if limit:
            config["time_limit_s"] = float(limit.group(1))
        return says("Small data: batch 8, no validation split.",
                    tool_call("write_file", path="config.json", content=json.dumps(config, indent=1)))
    if turn == 2:
        return says(None, tool_call("run_script", command=TRAIN))
    if turn == 3:
        return says(None, tool_call("read_files", paths=["metrics.json"]))
    value = re.search(r'"value": ([\d.]+)', tool_results(body)[0])
    return says(f"Trained: test AUROC {value.group(1) if value else 'in metrics.json'}.", usage=(7000, 40))


class Broken:
    """The Task Manager's three attempts: 12 parallel calls a reply; unreadable replies; no plan."""

    def __init__(self):
        self.attempt = 0

    def __call__(self, body: dict) -> dict[str, Any]:
        if turn_of(body) == 0 and not any(m["role"] == "tool" for m in body["messages"]):
            if len(body["messages"]) == 2:
                self.attempt += 1
        if self.attempt == 1:
            return says("Listing everything, many times.", *[tool_call("list_files", path=".") for _ in range(12)])
        if self.attempt == 2:  # arguments that are JSON but not an object: the client cannot read the reply
            return says(None, {"function": {"name": "list_files", "arguments": "[\".\"]"}}, usage=(3000, 25))
        return says("I have chosen a dataset.", usage=(1000, 10))
