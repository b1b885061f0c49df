"""Run detail: datacard, plan, index, training curve, metrics, figures, model card, trajectories."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st
import yaml

from medbuilder.dashboards import data, ui

REFRESH_S = 3


def render() -> None:
    st.title("Run detail")
    runs = data.list_runs()
    if not runs:
        st.info("No runs yet.")
        return
    ids = [r.run_id for r in runs]
    wanted = st.query_params.get("run")
    index = ids.index(wanted) if wanted in ids else 0
    run_id = st.selectbox("Run", ids, index=index, key=f"detail-run-{wanted}")
    if run_id != wanted:
        st.query_params["run"] = run_id
    run = next(r for r in runs if r.run_id == run_id)
    if st.button("Refresh", key="detail_refresh"):
        st.rerun()
    if run.status in data.ACTIVE:
        _live(run.run_id, _signature(run))
    else:
        _header(run)
    folder = run.folder
    tabs = st.tabs(["Overview", "Data", "Training", "Evaluation", "Model card", "Trajectories", "Decisions"])
    with tabs[0]:
        _overview(folder)
    with tabs[1]:
        _data(folder)
    with tabs[2]:
        _training(folder)
    with tabs[3]:
        _evaluation(folder)
    with tabs[4]:
        card = data.text_of(folder, "model_card.md")
        st.markdown(card) if card else st.info("No model card yet: it is written when a round is delivered.")
    with tabs[5]:
        _trajectories(folder)
    with tabs[6]:
        _decisions(folder)


def _signature(run: data.RunInfo) -> tuple:
    """What the tabs below show that changes while a run goes: status, gate, stages and their status."""
    return run.shown_status, tuple((r["stage"], r["status"]) for r in data.stage_rows(run.folder)), \
        tuple(data.rounds(run.folder))


@st.fragment(run_every=REFRESH_S)
def _live(run_id: str, seen: tuple) -> None:
    """The header with the running stage, epoch, loss, ETA and the live curve, refreshed every few seconds;
    the whole page reruns once a stage ends or the run stops, so the tabs follow."""
    run = data.find_run(run_id)
    if run is None:
        st.warning(f"The run folder of {run_id} is gone.")
        return
    if _signature(run) != seen:
        st.rerun()
    _header(run)
    now = ui.now_line(run.folder)
    if now and now.training:
        ui.training_chart(now.training.log)


def _header(run: data.RunInfo) -> None:
    st.markdown(f"**Status: {ui.status_text(run.shown_status)}** · dataset `{run.dataset or '-'}` · "
                f"created {run.created}")
    st.markdown(f"Request: *{run.request}*")
    if run.shown_status == "failed":
        _failure(run.folder)
    if run.flow_run_id and (url := data.ui_url(run.flow_run_id, run.api_url)):
        st.markdown(f"Flow run `{run.flow_run_id}` ([Prefect UI]({url}))")
    rounds = data.rounds(run.folder)
    if rounds:
        summary = data.round_summary(run.folder, rounds[-1])
        if summary:
            st.metric(f"Test {summary['metric'].upper()} (round {rounds[-1]})", f"{summary['value']:.3f}",
                      help=data.metric_line(summary))
            st.markdown(f"**{data.metric_line(summary)}**")


def _failure(folder) -> None:
    """What stopped a failed build: the role, how each attempt ended, what the last check found, the fix."""
    failure = data.json_of(folder, "failure.json") or {}
    who = failure.get("role") or failure.get("stage") or "the build"
    lines = [f"**{who} stopped the build**: {failure.get('status', 'see the log')}."]
    lines += [f"- {line}" for line in failure.get("history", [])]
    if failure.get("findings"):
        lines += ["", "What the last check found:", *[f"- {finding}" for finding in failure["findings"]]]
    if failure.get("fix"):
        lines += ["", f"Fix: {failure['fix']}; then `{failure.get('resume', '')}`."]
    st.error("\n".join(lines))


def _overview(folder) -> None:
    plan = data.json_of(folder, "plan.json")
    if not plan:
        st.info("No plan yet: the Task Manager has not finished.")
        return
    st.markdown(f"**Plan** ({plan['status']}): dataset `{plan.get('dataset')}`, task {plan.get('task')}, "
                f"{plan.get('dimension')}, metric {plan.get('metric')}")
    for reason in plan.get("reasons", []):
        st.markdown(f"- {reason}")
    if plan.get("steps"):
        st.markdown("**Steps**")
        for step in plan["steps"]:
            st.markdown(f"1. {step}")
    if plan.get("candidates"):
        st.dataframe(pd.DataFrame([{k: c[k] for k in ("name", "score", "fits")} for c in plan["candidates"]]),
                     hide_index=True)
    objective = data.json_of(folder, "objective.json")
    if objective:
        st.markdown("**Objective**")
        st.json(objective)


def _data(folder) -> None:
    card = data.json_of(folder, "datacard.json")
    if card:
        st.markdown(f"**Datacard `{card['name']}`**: {card.get('title', '')}")
        with st.expander("Datacard (as it was when chosen)"):
            st.code(yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=100), language="yaml")
    report = data.json_of(folder, "index_report.json")
    if report:
        st.markdown("**Index**")
        counts = report.get("class_counts") or {}
        if counts:
            st.dataframe(pd.DataFrame(counts).fillna(0).astype(int).rename_axis("class"))
        else:
            st.json(report.get("counts", {}))
        problems = report.get("problems") or []
        st.markdown("No problems found by the index checks." if not problems
                    else "\n".join(f"- {p}" for p in problems))
    batch = data.json_of(folder, "batch_check.json")
    if batch:
        with st.expander("Dataloader batch check"):
            st.json(batch)


def _training(folder) -> None:
    rounds = data.rounds(folder) or [None]
    for k in rounds:
        log = data.train_log(folder, k)
        if not log:
            continue
        st.markdown(f"**Training curve{'' if k is None else f', round {k}'}**")
        ui.training_chart(log)
        frame = pd.DataFrame(log)
        with st.expander("train_log.jsonl"):
            st.dataframe(frame, hide_index=True)
    if rounds == [None] and not data.train_log(folder):
        st.info("No training log yet.")


def _evaluation(folder) -> None:
    rounds = data.rounds(folder)
    if not rounds:
        st.info("Not evaluated yet.")
        return
    _external(folder)
    for k in reversed(rounds):
        summary = data.round_summary(folder, k) or {}
        st.subheader(f"Round {k}")
        if summary:
            st.markdown(f"**{data.metric_line(summary)}** on {summary.get('n_test')} test cases "
                        f"({summary.get('n_train')} for training)")
            if summary.get("extras"):
                st.dataframe(pd.DataFrame([summary["extras"]]), hide_index=True)
            for section in summary.get("sections", []):
                st.markdown(section)
        images = data.round_figures(folder, k)
        if images["figures"]:
            ui.image_grid(images["figures"], len(images["figures"]))
        if images["saliency"]:
            st.markdown("**Saliency gallery**")
            ui.image_grid(images["saliency"], 4)
        report = data.text_of(folder, f"report/round-{k}/interpretability.md")
        if report:
            with st.expander("interpretability.md"):
                st.markdown(report)


def _external(folder) -> None:
    """Each external validation of the delivered model (`medbuilder evaluate RUN --dataset NAME`)."""
    from medbuilder.review.external_report import comparison_rows, headline

    reports = data.external_reports(folder)
    if not reports:
        return
    st.subheader("External validation")
    for r in reports:
        st.markdown(f"**{headline(r)}**")
        st.dataframe(pd.DataFrame(comparison_rows(r), columns=["test set", "AUROC", "95% CI", "over"]),
                     hide_index=True)
        report = data.text_of(folder, f"external/{r['dataset']}/external_validation.md")
        if report:
            with st.expander(f"external_validation.md ({r['dataset']})"):
                st.markdown(report)


def _trajectories(folder) -> None:
    trajectories = data.trajectories(folder)
    if not trajectories:
        st.info("No trajectories yet.")
        return
    for t in trajectories:
        tokens = t.get("tokens") or {}
        title = (f"{t['file']} · {t.get('status')} · {len(t.get('steps', []))} tool calls · "
                 f"{tokens.get('prompt', 0) + tokens.get('completion', 0)} tokens")
        with st.expander(title):
            if t.get("feedback_in"):
                st.warning(f"Started from feedback:\n\n{t['feedback_in']}")
            if t.get("steps"):
                st.dataframe(pd.DataFrame([{"#": s["index"], "tool": s["tool"], "ok": s["ok"],
                                            "args": json.dumps(s["args"])[:200], "seconds": s["seconds"]}
                                           for s in t["steps"]]), hide_index=True)
            for message in t.get("messages", []):
                role = message.get("role", "?")
                with st.chat_message("assistant" if role in ("assistant", "tool") else "user"):
                    st.caption(role + (f" · {message['name']}" if message.get("name") else ""))
                    if message.get("content"):
                        st.text(str(message["content"])[:4000])
                    for call in message.get("tool_calls") or []:
                        st.code(json.dumps(call, indent=1)[:4000], language="json")
            if t.get("final"):
                st.markdown(f"**Final:** {t['final']}")
            if t.get("error"):
                st.error(t["error"])


def _decisions(folder) -> None:
    decisions = data.decisions(folder)
    if not decisions:
        st.info("No gate answered yet.")
        return
    st.dataframe(pd.DataFrame(decisions), hide_index=True)
