"""`medbuilder build | resume | approve | stage | predict | runs`: the build flow from the command line."""

from __future__ import annotations

import contextlib
import json
import os
import traceback
from enum import Enum
from pathlib import Path

import typer

from medbuilder.cli.common import fail
from medbuilder.cli.runs import find_run
from medbuilder.progress import TrainingWatch
from medbuilder.stages.registry import STAGES



class Core(str, Enum):
    offline = "offline"
    llm = "llm"


class Approve(str, Enum):
    auto = "auto"
    terminal = "terminal"
    prefect = "prefect"


QUIET_KEYS = ("roles", "failure", "questions", "reasons")


def _print_summary(summary: dict) -> None:
    for key, value in summary.items():
        if value is not None and key not in QUIET_KEYS:
            typer.echo(f"{key}: {json.dumps(value) if isinstance(value, (list, dict)) else value}")
    if summary.get("roles"):
        typer.echo(f"{'role':18} {'iterations':>10} {'actions':>8} {'tokens':>8} {'seconds':>8}")
        for role, row in summary["roles"].items():
            typer.echo(f"{role:18} {row['iterations']:>10} {row['actions']:>8} {row['tokens']:>8} {row['seconds']:>8}")


def build(
    request: str = typer.Argument(..., help="What the model should do, in plain words."),
    dataset: str = typer.Option(None, "--dataset", help="Use this dataset (a datacard name) if it fits."),
    core: Core = typer.Option(None, "--core", help="Agent core; default: MEDBUILDER_CORE or offline."),
    approve: Approve = typer.Option(None, "--approve", help="How gates are answered; default: MEDBUILDER_APPROVE or prefect."),
) -> None:
    """Run the build_model flow: Task Manager -> dataset gate -> Data Engineer -> Module Architect ->
    Model Trainer -> evaluation -> review gate (-> refinement rounds) -> delivery."""
    from medbuilder.lifecycle.request import BadRequest, check_request

    try:
        check_request(request)
    except BadRequest as err:
        fail(str(err))
    if dataset:
        _check_dataset(dataset)
    from medbuilder.flows.build import build_model

    summary = build_model(request=request, dataset=dataset, core=core and core.value,
                          approve=approve and approve.value)
    _print_summary(summary)
    _explain_end(summary)


def _check_dataset(name: str) -> None:
    """--dataset must name a datacard; the error lists the known ones."""
    from medbuilder.cli.common import registry
    from medbuilder.protocol.registry import DatacardError

    try:
        registry().get(name)
    except KeyError as err:
        fail(f"--dataset: {err.args[0]}")
    except DatacardError as err:
        fail(f"--dataset {name}: the datacards folder has a broken card: {err}")


def _explain_end(summary: dict) -> None:
    """A build that did not deliver: say plainly what stopped it and what to do; exit non-zero."""
    status, run_id = summary.get("status"), summary.get("run_id")
    if status == "no_fit":
        _explain_no_fit(summary)
    elif status == "failed":
        failure = summary["failure"]
        who = f"{failure['role']} (stage {failure['stage']})" if failure.get("role") else f"stage {failure['stage']}"
        attempts = f" after {failure['attempts']} attempt(s)" if failure.get("attempts") else ""
        lines = [f"error: {who} stopped{attempts}: {failure['status']}.",
                 *(["How each attempt ended:"] + [f"  - {line}" for line in failure["history"]]
                   if failure.get("history") else []),
                 "What the last check found:",
                 *(f"  - {finding}" for finding in failure["findings"]),
                 f"Fix: {failure['fix']}: `{failure['resume']}`.", f"Details (tracebacks): {failure['log']}"]
        typer.secho("\n".join(lines), fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    elif status == "needs_answer":
        asked = summary["questions"]
        lines = [f"stopped at gate {asked['gate']}: automatic approval accepts only an unambiguous layout, and "
                 f"{len(asked['questions'])} question(s) need your answer (run {run_id}):",
                 *(f"  {i}. {q}" for i, q in enumerate(asked["questions"], 1)),
                 f"The gate's full text: {summary['run_dir']}/gates/{asked['gate']}.md",
                 f"Answer: `medbuilder approve {run_id}` (use the layout as it is), `medbuilder approve {run_id} "
                 f"--action correct --layout FILE` (a corrected layout; the inferred one is {summary['run_dir']}/"
                 f"layout.json), or `--action pick --dataset NAME`; then `medbuilder resume {run_id}`."]
        typer.secho("\n".join(lines), fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(3)


def _explain_no_fit(summary: dict) -> None:
    """No dataset fits: say so plainly, with every datacard considered and how to add one; exit 1."""
    from medbuilder.settings import get_settings

    reasons = summary.get("reasons") or []
    first = reasons[0] if reasons else "no dataset fits"
    headline = f"{first} the request" if first == "no dataset fits" else first.rstrip(".")
    lines = [f"error: {headline} (run {summary['run_id']}).",
             f"Datacards considered (in {get_settings().datacards_dir}):", *(f"  - {r}" for r in reasons[1:]),
             "Fix: rephrase the request (task, modality, anatomy, finding), name a dataset with --dataset NAME, "
             "or add a datacard with `medbuilder datacards add FILE`; then "
             f"`medbuilder resume {summary['run_id']}` asks the Task Manager again."]
    typer.secho("\n".join(lines), fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def resume(
    run: str = typer.Argument(..., help="Run id or run folder."),
    approve: Approve = typer.Option(None, "--approve", help="Change how the remaining gates are answered."),
) -> None:
    """Continue an interrupted run; finished stages and answered gates are not redone."""
    from medbuilder.lifecycle.recovery import flow_process

    folder = find_run(run)
    alive = flow_process(folder)
    if alive and alive["pid"] != os.getpid():
        fail(f"run {folder.run_id} is still running (flow process {alive['pid']}, started {alive['started']}): "
             "answer its gate with `medbuilder approve`, wait for it, or stop that process before resuming")
    from medbuilder.flows.build import build_model

    summary = build_model(run_dir=str(folder.root), approve=approve and approve.value)
    _print_summary(summary)
    _explain_end(summary)


def approve_gate(
    run: str = typer.Argument(..., help="Run id or run folder of a run waiting at a gate."),
    action: str = typer.Option("approve", "--action",
                               help="dataset gate: approve|pick|correct|reject; review gate: approve|refine|reject"),
    dataset: str = typer.Option(None, "--dataset", help="With --action pick: the datacard to use instead."),
    layout: Path = typer.Option(None, "--layout", help="With --action correct: a file holding the corrected layout "
                                                       "(JSON or YAML; start from the run's layout.json)."),
    reason: str = typer.Option(None, "--reason", help="Why (recorded with the decision)."),
    feedback: str = typer.Option(None, "--feedback", help="With --action refine: what should change, in plain words."),
    who: str = typer.Option("clinician", "--who", help="Your name, recorded with the decision."),
    max_reliance: float = typer.Option(None, "--max-reliance",
                                       help="Review gate: the most reliance on the confounder accepted (0-1)."),
    max_metric_drop: float = typer.Option(None, "--max-metric-drop",
                                          help="Review gate: how far AUROC, sensitivity and specificity may fall "
                                               "below round 0."),
    threshold: float = typer.Option(None, "--threshold", help="Review gate, approve: call a case positive at this "
                                                              "probability or above (default 0.5)."),
    target: str = typer.Option(None, "--target", help="Review gate, approve: sensitivity or specificity, with "
                                                      "--target-value: the threshold that reaches it."),
    target_value: float = typer.Option(None, "--target-value", help="With --target: the rate to reach, e.g. 0.95."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Review gate, approve: deliver with the temperature "
                                                              "fitted on the validation split (see Calibration)."),
    confounder: str = typer.Option(None, "--confounder", help="Review gate, refine: correct the confounder read "
                                                              "from the feedback (the datacard's name)."),
    measure: str = typer.Option(None, "--measure", help="Review gate, refine: correct the reliance measure."),
    strategy: list[str] = typer.Option(None, "--strategy", help="Review gate, refine: a strategy to use (repeat): "
                                       "roi, counterfactual_aug, mask_confounder, group_balanced."),
) -> None:
    """Answer the gate a paused run waits at, from another terminal (resumes it through Prefect)."""
    from medbuilder.lifecycle.answer import GateInputError, NotWaiting, answer_gate

    folder = find_run(run)
    if layout is not None and not layout.is_file():
        fail(f"--layout {layout}: no such file; write the corrected layout there (start from the run's layout.json)")
    values = {"action": action, "dataset": dataset, "reason": reason, "feedback": feedback, "who": who,
              "max_reliance": max_reliance, "max_metric_drop": max_metric_drop, "threshold": threshold,
              "target": target, "target_value": target_value, "confounder": confounder, "measure": measure,
              "strategies": strategy or None, "layout": layout.read_text() if layout else None,
              "calibrate": calibrate or None}
    stopped = folder.exists("gates/unanswered.json") and not folder.exists("gates/pending.json")
    try:
        gate = answer_gate(folder, {k: v for k, v in values.items() if v is not None})
    except (GateInputError, NotWaiting, ValueError) as err:
        fail(str(err))
    then = f"`medbuilder resume {folder.run_id}` goes on from it" if stopped else "the run goes on"
    typer.echo(f"answered gate {gate} of run {folder.run_id}: {action}; {then}")
    if action == "refine":
        _echo_reading(folder, gate, values)


def _echo_reading(folder, gate: str, values: dict) -> None:
    """How the refine feedback is read: what the next round will change."""
    from medbuilder.review.refine import read_feedback

    try:
        reading = read_feedback(folder, int(gate.split("-", 1)[1]) + 1, values.get("feedback") or "", values)
    except (ValueError, OSError) as err:
        typer.echo(f"(the feedback's reading could not be shown: {err})")
        return
    objective = reading["objective"]
    if objective:
        typer.echo(f"read as: confounder {objective['confounder']}; measure {objective['measure']} at most "
                   f"{objective['max_reliance']:.2f}; metric, sensitivity and specificity at most "
                   f"{objective['max_metric_drop']:.2f} below round 0")
    typer.echo(f"next round: {reading['summary']}")


def stage(
    run: str = typer.Argument(..., help="Run id or run folder."),
    name: str = typer.Argument(..., help=f"One of: {', '.join(STAGES)}."),
    round_k: int = typer.Option(0, "--round", help="evaluate/deliver: which training round."),
    core: Core = typer.Option(None, "--core", help="Agent core for a role stage; default: the run's."),
) -> None:
    """Re-run one stage alone on an existing run folder (its record is reset first)."""
    folder = find_run(run)
    if name not in STAGES:
        fail(f"unknown stage '{name}'; stages: {', '.join(STAGES)}")
    spec = STAGES[name]
    record_name = f"evaluate-{round_k}" if name == "evaluate" else name
    folder.path(f"stages/{record_name}.json").unlink(missing_ok=True)
    record = folder.record()
    watch = TrainingWatch(folder.workspace) if spec.holds_training_slot else contextlib.nullcontext()
    try:
        with watch:  # the training's bar (no Prefect here: no artifact)
            summary = spec.run(str(folder.root), core=(core and core.value) or record.core, round_k=round_k,
                               record=record_name)
    except Exception as err:  # the user gets the reason; the traceback goes to the run's logs
        log = folder.path(f"logs/stage-{record_name}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc())
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        fail(f"stage {name} of run {folder.run_id} stopped: {first} (traceback: {log})")
    _print_summary(summary)


def predict(
    run: str = typer.Argument(..., help="Run id or run folder with a delivered model."),
    files: list[Path] = typer.Argument(..., help="Images or volumes to predict on."),
) -> None:
    """Predict with a run's delivered model bundle; one JSON line per file."""
    from medbuilder.delivery.predict import predict_run

    folder = find_run(run)
    try:
        results = predict_run(folder.root, files)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    for result in results:
        typer.echo(json.dumps(result))


def runs() -> None:
    """Recent runs: id, status, request."""
    from medbuilder.lifecycle.recovery import observed_status
    from medbuilder.protocol.artifacts import RunRecord
    from medbuilder.settings import get_settings

    for folder in sorted(get_settings().runs_dir.glob("*/run.json")):
        record = RunRecord.model_validate_json(folder.read_text())
        status = observed_status(folder.parent, record.status)
        typer.echo(f"{record.run_id:40} {status:11} {record.request[:60]}")
        if status == "failed" and record.failed_role:
            typer.echo(f"{'':40} {record.failed_role}: {record.failure_reason}")
