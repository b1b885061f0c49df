"""The markdown each gate shows (Prefect UI form, terminal, dashboard)."""

from __future__ import annotations

from medbuilder.protocol.artifacts import Plan, RunFolder


def dataset_question(run: RunFolder, plan: Plan) -> str:
    card = run.read_json("datacard.json")
    lines = [f"## Dataset for: \"{plan.request}\"", "",
             f"**Chosen: `{plan.dataset}`** ({card['title']}; {card['provenance']} data, licence: {card['licence']})",
             f"Task: **{plan.task}**, {plan.dimension}, metric: {plan.metric}.", "", "Why:"]
    lines += [f"- {reason}" for reason in plan.reasons]
    others = [c for c in plan.candidates if c.name != plan.dataset]
    if others:
        lines += ["", "Other datacards:"]
        lines += [f"- `{c.name}` (score {c.score:.2f}, {'fits' if c.fits else 'does not fit'})" for c in others]
    lines += ["", "Answer: `approve`, `pick` with another `dataset` name, or `reject` with a `reason`."]
    return "\n".join(lines)


def review_question(run: RunFolder, summary: dict, round_k: int) -> str:
    ci = summary.get("ci95")
    interval = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci and None not in ci else ""
    lines = [f"## Review of round {round_k}", "",
             f"Test **{summary['metric']} = {summary['value']:.3f}**{interval} on {summary.get('n_test')} test cases "
             f"({summary.get('n_train')} used for training)."]
    lines += [f"- {name}: {value:.3f}" for name, value in summary.get("extras", {}).items()]
    if summary.get("figures"):
        lines += ["", "Figures in the run folder: " + ", ".join(f"`{f}`" for f in summary["figures"])]
    for section in summary.get("sections", []):
        lines += ["", section]
    lines += ["", f"Run folder: `{run.root}`",
              "Answer: `approve`, `refine` with `feedback` in plain words, or `reject`."]
    return "\n".join(lines)
