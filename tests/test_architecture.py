"""The map of the code: no import cycles (lazy imports included), one registry of stages that everything reads."""

from __future__ import annotations

import ast
from pathlib import Path

from medbuilder.stages.registry import BUILD_ROLES, ROLES, STAGES, role_of, stage_of

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"medbuilder": "medbuilder", "medbuilder.protocol": "protocol", "medbuilder.agents": "agents",
            "medbuilder.tasks": "tasks", "medbuilder.flows": "flows", "medbuilder.dashboards": "dashboards"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if "_common" in parts or (len(parts) > 2 and parts[0] == "templates"):
                continue  # template code runs in the sandbox, not as medbuilder's modules
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every medbuilder module `path` imports, at the top or inside a function."""
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medbuilder"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                deps.add(name if name in modules else node.module)
        elif isinstance(node, ast.Import):
            deps |= {a.name for a in node.names if a.name.startswith("medbuilder")}
    return {d for d in deps if d in modules}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_even_through_lazy_imports():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert len(graph) > 100
    assert _cycles(graph) == []


def test_a_planted_cycle_is_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_registry_names_every_stage_and_role_once():
    from medbuilder.agents.roles import ROLES as ROLE_SPECS

    assert list(STAGES) == ["task_manager", "prepare_data", "data_engineer", "module_architect", "model_trainer",
                            "evaluate", "deliver"]
    assert set(ROLE_SPECS) == set(ROLES) and ROLES == tuple(n for n in STAGES if STAGES[n].role)
    assert BUILD_ROLES == ("module_architect", "model_trainer")
    assert stage_of("model_trainer-2").name == "model_trainer" and stage_of("evaluate-0").name == "evaluate"
    assert role_of("task_manager-2") == "task_manager" and role_of("deliver") is None and stage_of("x") is None


def test_flows_hold_only_flows_gates_and_deployments():
    """Nothing outside flows/ imports from it except to start a flow or serve the deployments."""
    allowed = {"medbuilder.flows.build", "medbuilder.flows.deployments", "medbuilder.flows.reevaluate"}
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("medbuilder.flows"):
            continue
        used = {d for d in _imports(path, modules) if d.startswith("medbuilder.flows")}
        assert used <= allowed, f"{name} imports {used - allowed} from flows/"


def _tree_entries() -> set[str]:
    """The paths the run folder's docstring tree names at its top level (first column)."""
    import medbuilder.protocol.run_folder as run_folder

    doc = run_folder.__doc__
    tree = doc.split("::", 1)[1].split("``ARTIFACTS``", 1)[0]
    entries = set()
    for line in tree.splitlines():
        if line.startswith("    ") and not line.startswith("     ") and line.strip():
            entries.add(line.split()[0])
    return entries


def test_the_run_folder_tree_matches_its_artifacts():
    from medbuilder.protocol.run_folder import ARTIFACTS

    assert _tree_entries() == {a.path for a in ARTIFACTS.values()}


def test_every_stage_reads_and_writes_named_artifacts():
    from medbuilder.protocol.run_folder import ARTIFACTS

    for stage in STAGES.values():
        assert set(stage.reads) | set(stage.writes) <= set(ARTIFACTS), stage.name
