"""Module Architect: copy the task's template, fill its data keys, check one batch."""

from __future__ import annotations

import json
from dataclasses import replace

from medbuilder.agents.core import RoleJob
from medbuilder.agents.roles.base import Role, RoleContext
from medbuilder.agents.roles.preprocessing import before_script, store_roots
from medbuilder.agents.scripted import Actor
from medbuilder.agents.trajectory import Trajectory
from medbuilder.protocol.templates import get_template
from medbuilder.protocol.templates.complete import complete_config
from medbuilder.protocol.templates.fill import CONFIG, FILL_RECORD
from medbuilder.protocol.templates.spec import COMMON_DIR, TEMPLATES_DIR
from medbuilder.protocol.tools import Workspace
from medbuilder.protocol.tools.run import run_script
from medbuilder.protocol.tools.sandbox import SandboxConfig
from medbuilder.protocol.untrusted import UntrustedFileError, read_text_nofollow
from medbuilder.review.trusted_code import edited_files

ROLE_NAME = "module_architect"
BATCH_CHECK = "python dataloader.py --config config.json"


def _context(ctx: RoleContext) -> dict:
    spec = get_template(ctx.plan.task)
    return {"request": ctx.request, "task": ctx.plan.task, "dimension": ctx.card.dimension,
            "template_dir": str(spec.folder), "common_dir": str(COMMON_DIR), "workspace": str(ctx.run.workspace),
            "index_dir": str(ctx.run.index_dir), "keys": spec.key_table(), "batch_check": BATCH_CHECK,
            "feedback": ctx.feedback.text() if ctx.feedback else None}


def policy(job: RoleJob, act: Actor) -> str:
    values = job.context
    listing = act.expect("list_files", "What does the template hold?", path=values["template_dir"])
    entries = [e.split("  ")[0].rstrip("/") for e in listing.result.entries]
    sources = [f"{values['template_dir']}/{name}" for name in entries if name != "__pycache__"]
    sources += [str(p) for p in sorted(COMMON_DIR.glob("*.py"))]
    act.expect("copy_files", "Copy the template into the workspace.", sources=sources, destination=".",
               overwrite=values["feedback"] is not None)
    draft = act.expect("suggest_config", "Which data keys follow from the index?", task=values["task"],
                       dimension=values["dimension"]).result
    config, shown = draft.config, ", ".join(f"{k}={v}" for k, v in draft.data_keys.items() if k != "index_dir")
    act.expect("write_file", f"Fill the data keys: {shown}.", path=CONFIG, content=json.dumps(config, indent=1) + "\n")
    check = act("run_script", "Check one batch.", command=values["batch_check"])
    return f"Filled the {values['task']} template ({shown}). Batch check: " + \
        ("passed" if check.ok else "FAILED\n" + check.text[-1500:])


def check(ctx: RoleContext) -> list[str]:
    workspace = ctx.run.workspace
    missing = [f for f in ("dataloader.py", "model.py", "train.py", CONFIG) if not (workspace / f).exists()]
    if missing:
        return [f"the workspace lacks {missing}: copy the {ctx.plan.task} template and write config.json"]
    written = _config_bytes(workspace)
    problems = template_problems(ctx, "module_architect")
    reused = _agent_batch_check(ctx) if _config_bytes(workspace) == written else None  # filling changed nothing
    exit_code, output = (0, reused) if reused is not None else _run_batch_check(ctx)
    ran = "by the agent, its last action" if reused is not None else "by the check"
    ctx.run.write("batch_check.json", {"command": BATCH_CHECK, "exit_code": exit_code, "output": output, "ran": ran})
    if exit_code != 0 or "dataloader OK" not in output:
        problems.append(f"`{BATCH_CHECK}` failed (exit code {exit_code}); fix config.json:\n{output}")
    return problems


def _config_bytes(workspace) -> bytes | None:
    try:
        return read_text_nofollow(workspace, CONFIG).encode()
    except (OSError, UntrustedFileError):
        return None


def template_problems(ctx: RoleContext, role: str) -> list[str]:
    """The workspace must hold the template's code unedited and a config.json that fills it: medbuilder then
    completes the config from the template's defaults and records the fill (template_fill.json)."""
    edited = edited_files(ctx.run.workspace, ctx.plan.task)
    problems = [f"{', '.join(edited)} differ from the {ctx.plan.task} template: medbuilder evaluates and explains the "
                f"model with its own template code, so copy those files from the template again (copy_files with "
                f"overwrite) and put every choice in {CONFIG} (the template's keys)"] if edited else []
    return problems + complete_config(ctx.plan.task, ctx.run.workspace, ctx.run.index_dir, ctx.run.root / FILL_RECORD,
                                      role)


def _agent_batch_check(ctx: RoleContext) -> str | None:
    """The output of the agent's own batch check when it passed and was its last action: no tool ran after
    it, so the workspace is the one it checked and running it again would repeat the same work. None
    otherwise (the check then runs it)."""
    try:
        steps = Trajectory.load(ctx.run.root / "trajectories" / f"module_architect-{ctx.attempt}.json").steps
        log = (ctx.run.root / "logs" / f"module_architect-{ctx.attempt}.log").read_text(errors="replace")
    except (OSError, ValueError):
        return None
    last = steps[-1] if steps else None
    if last is None or last.tool != "run_script" or not last.ok or last.args.get("command") != BATCH_CHECK:
        return None
    output = log.rsplit(f"$ {BATCH_CHECK}\n", 1)[-1][-3000:]
    return output if "dataloader OK" in output else None


def _run_batch_check(ctx: RoleContext) -> tuple[int | None, str]:
    """The batch check run by the check itself: agent-written code, so in the sandbox like run_script."""
    workspace = Workspace.create(ctx.run.workspace, _read_roots(ctx), output_chars=ctx.settings.tool_output_chars,
                                 script_timeout_s=ctx.settings.script_timeout_s,
                                 sandbox=SandboxConfig.from_settings(ctx.settings))
    result = run_script(replace(workspace, before_script=before_script(ROLE_NAME)(ctx)), BATCH_CHECK)
    return result.exit_code, result.as_text()[-3000:]


def _read_roots(ctx: RoleContext) -> list:
    return [ctx.dataset_root, TEMPLATES_DIR, *store_roots(ctx)]


ROLE = Role(
    name=ROLE_NAME,
    tools=["suggest_config", "list_files", "read_files", "copy_files", "write_file", "edit_file", "run_script",
           "load_med_data", "check_3D", "normalize_image", "augment_image"],
    policy=policy,
    read_roots=_read_roots,
    check=check,
    context=_context,
    before_script=before_script(ROLE_NAME),
)
