"""Serve the build_model flow as deployment "build_model/build" (for the dashboard browser test).

`medbuilder up` / `python -m medbuilder.flows.deployments` do this in production; this file keeps
the browser test independent of the stack's extra options. Needs PREFECT_API_URL.
"""

from medbuilder.flows.build import build_model

if __name__ == "__main__":
    build_model.serve(name="build", limit=2)
