"""The `build_model` flow: a clinician's request in, an approved model bundle out.

The flow body is only the sequence and the gates; every stage is a thin task
over a plain function, and skips itself when its record in ``stages/`` says it
completed, so `medbuilder resume RUN` continues where a run stopped.

Run folder (``runs/<run-id>/``)::

    run.json                    run id, request, core, gate mode, flow run id, API URL, status
    request.json                the clinician's request and optional dataset name
    plan.json                   Task Manager: chosen dataset, task, metric, reasons, candidates
    datacard.json               the chosen datacard, as it was when chosen
    decisions/<gate>.json       each gate's answer: action, who, via (auto/terminal/prefect/cli), when
    gates/<gate>.md             the question each gate showed; gates/pending.json while one waits;
                                gates/unanswered.json when automatic approval stopped at a question
    layout.json                 Data Engineer: the submitted layout (where images, labels, masks, ids, split are)
    indexing_report.json        what the shared indexer found with it: counts, samples, unmatched files, questions
    indexer/                    the shared indexer's own folder (medbuilder runs it here, sandboxed)
    workspace/                  where the agents work (the only place they write)
      layout.json index/        Data Engineer's submitted layout; index/{train,test,label_dict}.json
      dataloader.py model.py train.py common.py engine.py config.json template_fill.json
      checkpoints/ metrics.json predictions.json train_log.jsonl train_output.log
    index_report.json           index checks: counts per split and class, problems
    metadata_audit.json         classifiers: AUROC of a metadata-only model (size, borders, format, scanner), cross-
                                validated on the training split by unit; shown at the dataset and review gates
    batch_check.json            the dataloader batch check
    trajectories/<role>-<n>.json  one per role attempt: messages, tool calls, tokens, timings
    feedback/<role>-<n>.json    why attempt n failed its check (attempt n+1 starts from it)
    logs/<role>-<n>.log         the output of the scripts each attempt ran
    stages/<stage>.json         status, attempts, actions, tokens, seconds per stage
    rounds/<k>/                 round k's model: metrics, predictions, config, checkpoints/model.pt
    objective.json              what the model must not rely on: confounder, measure, limits (editable at review)
    report/round-<k>/           summary.json, figures (ROC, confusion matrix, Dice), interpretability.md/.json,
                                saliency-*.png, reliability.png, counterfactuals/ (roi confounders)
    refinements/round-<k>.json  the feedback that started round k and the changes made
    bundle/                     MONAI bundle of the approved round (configs/, models/, scripts/, docs/)
    model_card.md               data and split, metrics with 95% CIs, intended use, limits, decisions
    failure.json                when a role gave up or a stage failed: what, why, the fix, the resume command
    logs/flow.log               the flow's log with every traceback (the console shows one line per error)
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from medbuilder.flows.describe import dataset_question, gate_questions, review_question
from medbuilder.flows.gates import ReviewDecision, ask, stop_at_question
from medbuilder.flows.logs import run_log
from medbuilder.flows.runs import failure_of, finish, open_run
from medbuilder.protocol.artifacts import Plan, RunFolder
from medbuilder.review.compare import objective_met
from medbuilder.review.metadata_audit import AUDIT_FILE, audit_run
from medbuilder.review.refine import write_refinement
from medbuilder.review.verified_metric import fix_test_split
from medbuilder.settings import get_settings
from medbuilder.tasks.roles import role_task
from medbuilder.tasks.steps import deliver, evaluate, prepare_data

BUILD_ROLES = ("module_architect", "model_trainer")


@flow(name="build_model", log_prints=True, persist_result=False)
def build_model(request: str = "", dataset: str | None = None, core: str | None = None,
                approve: str | None = None, run_dir: str | None = None) -> dict:
    """Build a model for `request` (or continue the run in `run_dir`); returns the run's summary."""
    settings = get_settings()
    run, core, approve = open_run(settings, request, dataset, core, approve, run_dir)
    with run_log(run):
        try:
            return _build(run, core, approve, settings)
        except Exception as err:  # a role that gave up, a stage that failed: a short answer, details in the log
            get_run_logger().error("run %s stopped: %s", run.run_id, str(err).splitlines()[0] if str(err) else
                                   type(err).__name__, exc_info=True)
            return finish(run, "failed", failure=failure_of(run, err))


def _build(run: RunFolder, core: str, approve: str, settings) -> dict:
    retries = settings.max_debug_loops
    outcome = choose_dataset(run, core, approve, retries)
    if isinstance(outcome, str):
        return finish(run, outcome)
    for role in BUILD_ROLES:
        role_task.with_options(retries=retries)(str(run.root), role, core, role)

    round_k, baseline = 0, None
    while True:
        summary = evaluate(str(run.root), round_k)
        baseline = baseline or summary
        decision = ask(run, f"review-{round_k}", review_question(run, summary, round_k), approve,
                       timeout_s=settings.gate_timeout_s, poll_s=settings.gate_poll_s,
                       auto_answer=auto_review(summary, baseline, round_k, settings.max_refine_rounds))
        if decision.action == "approve":
            store_operating_point(run, round_k, decision)
            store_calibration(run, round_k, decision)
            deliver(str(run.root), round_k)
            return finish(run, "delivered", round_k)
        if decision.action == "reject":
            return finish(run, "rejected", round_k)
        round_k += 1
        write_refinement(run, round_k, decision.feedback or "", reading_edits(decision))
        role_task.with_options(retries=retries)(str(run.root), "model_trainer", core, f"model_trainer-{round_k}")


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
    fitted = f"report/round-{round_k}/calibration.json"
    if not decision.calibrate:
        return
    if not run.exists(fitted):
        get_run_logger().warning("calibrate was asked for, but round %s has no fitted temperature (no validation "
                                 "split of 10 images or more); delivered uncalibrated", round_k)
        return
    run.write("calibration.json", {**run.read_json(fitted), "round": round_k, "who": decision.who,
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
            role_task.with_options(retries=retries)(str(run.root), "task_manager", core, f"task_manager{suffix}")
            plan = run.read("plan.json", Plan)
            if plan.status == "no_fit":
                get_run_logger().warning("no dataset fits: %s", "; ".join(plan.reasons))
                return "no_fit"
            if plan.objective and not run.exists("objective.json"):
                run.write("objective.json", plan.objective)
            prepare_data.with_options(task_run_name=f"prepare_data{suffix}")(str(run.root), f"prepare_data{suffix}")
        role_task.with_options(retries=retries)(str(run.root), "data_engineer", core, f"data_engineer{suffix}")
        audit_acquisition(run, plan.task)
        gate = f"dataset-{round_k}"
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
            request = run.read_json("request.json")
            run.write("request.json", {**request, "dataset": decision.dataset})
    return "rejected"


def audit_acquisition(run: RunFolder, task: str) -> None:
    """The metadata-only baseline for the dataset gate; a failure is written down and shown, not fatal."""
    try:
        audit_run(run, task)
    except (OSError, ValueError, KeyError) as err:
        get_run_logger().warning("acquisition shortcut check failed: %s", err)
        run.write(AUDIT_FILE, {"task": task, "auroc": None, "note": f"the check could not run ({err})"})


def _initial_layout(run: RunFolder) -> dict:
    return {"layout": run.read_json("layout.json")} if run.exists("layout.json") else {}
