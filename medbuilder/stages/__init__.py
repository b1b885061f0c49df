"""The stages of a build, one plain function each, and the registry that names them (``registry.py``).

A stage function takes the run folder and returns a summary dict; ``record.run_stage`` keeps its record in
``stages/<name>.json`` (skipped when completed, so a resumed run goes on where it stopped). The Prefect tasks
(``medbuilder.tasks``), the flow, the CLI's ``stage`` command, the dashboard and the bench all read the registry.
"""
