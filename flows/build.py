"""The `build_model` flow: a clinician's request in, an approved model bundle out.

The flow body is only the sequence and the gates; every stage is a thin task
over a plain function, and skips itself when its record in ``stages/`` says it
completed, so `medbuilder resume RUN` continues where a run stopped, and so does a
deployment's run that a gate suspended (Prefect runs it again from the top once the
gate is answered: ``flows/gates.py``).

Every stage and what it reads and writes are in ``medbuilder/stages/registry.py``; the run folder's tree
is the docstring of ``protocol/run_folder.py``.
"""

from __future__ import annotations

import json

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import get_run_context

from medbuilder.agents.runner import prestart_scripts
from medbuilder.flows.describe import dataset_question, gate_questions, review_question
from medbuilder.flows.gates import ask, run_dir_to_continue, stop_at_question, was_asked
from medbuilder.flows.logs import run_log
from medbuilder.heap import freeze_survivors, unfreeze_all
from medbuilder.lifecycle.finish import failure_of, finish
from medbuilder.lifecycle.gate_forms import ReviewDecision
from medbuilder.lifecycle.open import open_run
from medbuilder.protocol.artifacts import Plan
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.protocol.tools import prestart
from medbuilder.review.compare import objective_met
from medbuilder.review.metadata_audit import AUDIT_FILE, audit_run
from medbuilder.review.refine import write_refinement
from medbuilder.review.verified_metric import fix_test_split
from medbuilder.settings import get_settings
from medbuilder.stages.registry import BUILD_ROLES
from medbuilder.tasks.stage_tasks import stage_task



@flow(name="build_model", log_prints=True, persist_result=False)
def build_model(request: str = "", dataset: str | None = None, core: str | None = None,
                approve: str | None = None, run_dir: str | None = None) -> dict:
    """Build a model for `request` (or continue the run in `run_dir`); returns the run's summary."""
    settings = get_settings()
    run_dir = run_dir or run_dir_to_continue(settings.runs_dir)  # a deployment's run resumed after a gate
    run, core, approve = open_run(settings, request, dataset, core, approve, run_dir, *_this_flow_run())
    with run_log(run):
        try:
            return _build(run, core, approve, settings)
        except Exception as err:  # a role that gave up, a stage that failed: a short answer, details in the log
            get_run_logger().error("run %s stopped: %s", run.run_id, str(err).splitlines()[0] if str(err) else
                                   type(err).__name__, exc_info=True)
            return finish(run, "failed", failure=failure_of(run, err))
        finally:
            prestart.discard(run.workspace)  # a Python started ahead that no script took
            unfreeze_all()  # the stages froze what they kept (medbuilder/heap.py)


def _this_flow_run() -> tuple[str, str]:
    """This flow run's id and the API it reports to (recorded in run.json: the CLI and dashboard resume it there)."""
    with get_client(sync_client=True) as client:
        return str(get_run_context().flow_run.id), str(client.api_url).rstrip("/")


def _build(run: RunFolder, core: str, approve: str, settings) -> dict:
    retries = settings.max_debug_loops
    outcome = choose_dataset(run, core, approve, retries)
    if isinstance(outcome, str):
        return finish(run, outcome)
    for role in BUILD_ROLES:
        stage_task(role, retries)(str(run.root), role, core)

    round_k, baseline = 0, None
    while True:
        summary = stage_task("evaluate")(str(run.root), f"evaluate-{round_k}", round_k=round_k)
        baseline = baseline or summary
        decision = ask(run, f"review-{round_k}", review_question(run, summary, round_k), approve,
                       timeout_s=settings.gate_timeout_s, poll_s=settings.gate_poll_s,
                       auto_answer=auto_review(summary, baseline, round_k, settings.max_refine_rounds))
        if decision.action == "approve":
            store_operating_point(run, round_k, decision)
            store_calibration(run, round_k, decision)
            stage_task("deliver")(str(run.root), "deliver", round_k=round_k)
            return finish(run, "delivered", round_k)
        if decision.action == "reject":
            return finish(run, "rejected", round_k)
        round_k += 1
        write_refinement(run, round_k, decision.feedback or "", reading_edits(decision))
        prestart_scripts("model_trainer", run, settings, f"model_trainer-{round_k}")
        stage_task("model_trainer", retries)(str(run.root), f"model_trainer-{round_k}", core)


def reading_edits(decision) -> dict:
    """The clinician's edits of how the feedback is read: the objective's numbers, confounder, measure, strategies."""
    return {k: getattr(decision, k) for k in ("max_reliance", "max_metric_drop", "confounder", "measure", "strategies")}


def store_operating_point(run: RunFolder, round_k: int, decision) -> None:
    """operating_point.json: the threshold the approved model is delivered at (the bundle and the card use it)."""
    from medbuilder.review.operating_point import DEFAULT_THRESHOLD, summary_block

    point = summary_block(run, round_k, decision.threshold if decision.threshold is not None else DEFAULT_THRESHOLD,
                          decision.target, decision.target_value)
    if point:
        run.write("operating_point.json", {**point, "round": round_k, "who": decision.who, "when": decision.when})


def store_calibration(run: RunFolder, round_k: int, decision) -> None:
    """calibration.json: the temperature the approved model is delivered with, when the clinician asked for it."""
    fitted = run.report_dir(round_k) / "calibration.json"
    if not decision.calibrate:
        return
    if not fitted.exists():
        get_run_logger().warning("calibrate was asked for, but round %s has no fitted temperature (no validation "
                                 "split of 10 images or more); delivered uncalibrated", round_k)
        return
    run.write("calibration.json", {**json.loads(fitted.read_text()), "round": round_k, "who": decision.who,
                                   "when": decision.when})


def auto_review(summary: dict, baseline: dict, round_k: int, max_rounds: int) -> ReviewDecision | None:
    """What an automatic reviewer answers: refine while the objective is not met and rounds are left."""
    if objective_met(summary, baseline) is False and round_k < max_rounds:
        objective = summary["interpretability"]["objective"]
        return ReviewDecision(action="refine", feedback=objective["words"], who="auto",
                              reason=f"objective not met after round {round_k}")
    return None


def choose_dataset(run: RunFolder, core: str, approve: str, retries: int) -> Plan | str:
    """Task Manager, Data Engineer and the dataset gate, until the clinician approves a dataset and its layout.

    Returns the approved plan, or how the run ends: ``no_fit``, ``rejected``, or ``needs_answer`` (automatic
    approval met a question: the run stops with it written down in gates/)."""
    settings = get_settings()
    plan, ask_task_manager = None, True
    for round_k in range(1, settings.max_dataset_rounds + 1):
        suffix = "" if round_k == 1 else f"-{round_k}"
        if ask_task_manager:
            stage_task("task_manager", retries)(str(run.root), f"task_manager{suffix}", core)
            plan = run.plan()
            if plan.status == "no_fit":
                get_run_logger().warning("no dataset fits: %s", "; ".join(plan.reasons))
                return "no_fit"
            if plan.objective and not run.exists("objective.json"):
                run.write("objective.json", plan.objective)
            stage_task("prepare_data")(str(run.root), f"prepare_data{suffix}")
            # the batch check's and train.py's Pythons (the Model Trainer's sandbox is the Module Architect's)
            prestart_scripts("module_architect", run, settings, count=2)
        stage_task("data_engineer", retries)(str(run.root), f"data_engineer{suffix}", core)
        gate = f"dataset-{round_k}"
        if not was_asked(run, gate):  # a run resumed at this gate audited before it asked
            audit_acquisition(run, plan.task)
        questions = gate_questions(run)
        if approve == "auto" and questions and not run.exists(f"decisions/{gate}.json"):
            stop_at_question(run, gate, dataset_question(run, plan), questions)
            return "needs_answer"
        decision = ask(run, gate, dataset_question(run, plan), approve, timeout_s=settings.gate_timeout_s,
                       poll_s=settings.gate_poll_s, initial=_initial_layout(run))
        if decision.action == "approve":
            fix_test_split(run)
            return plan
        if decision.action == "reject":
            return "rejected"
        ask_task_manager = decision.action == "pick"
        if ask_task_manager:
            run.ask_for_dataset(decision.dataset)
    return "rejected"


def audit_acquisition(run: RunFolder, task: str) -> None:
    """The metadata-only baseline for the dataset gate; a failure is written down and shown, not fatal."""
    freeze_survivors()  # as a stage does (medbuilder/heap.py): the gate runs between stages
    try:
        audit_run(run, task)
    except (OSError, ValueError, KeyError) as err:
        get_run_logger().warning("acquisition shortcut check failed: %s", err)
        run.write(AUDIT_FILE, {"task": task, "auroc": None, "note": f"the check could not run ({err})"})


def _initial_layout(run: RunFolder) -> dict:
    return {"layout": run.read_json("layout.json")} if run.exists("layout.json") else {}
