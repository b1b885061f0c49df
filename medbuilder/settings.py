"""One settings object for the whole system (environment prefix ``MEDBUILDER_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from medbuilder import REPO_ROOT


class Settings(BaseSettings):
    """Where things live, which agent core runs, and the limits every run obeys.

    Every field can be set from the environment, e.g. ``MEDBUILDER_DATA_DIR=/mnt/data``.
    Secrets (``llm_api_key``) are never written to run folders or logs.
    """

    model_config = SettingsConfigDict(env_prefix="MEDBUILDER_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(Path("data"), description="Where `medbuilder data prepare` lays datasets out; relative datacard paths resolve here.")
    runs_dir: Path = Field(Path("runs"), description="One folder per build run.")
    cache_dir: Path = Field(Path("cache"), description="medbuilder's store of preprocessed images, shared by builds, "
                            "checks, evaluations and the bench (`medbuilder cache list|clear`).")
    cache_max_gb: float = Field(20.0, gt=0, description="Size limit of the preprocessed store, GiB: the least "
                                "recently used entries go first.")
    preprocess_cache: bool = Field(True, description="Preprocess each image once into the store (false: every "
                                   "script preprocesses its images itself).")
    datacards_dir: Path = Field(REPO_ROOT / "datacards", description="One datacard file (YAML or JSON) per dataset.")
    core: Literal["offline", "llm"] = Field("offline", description="Agent core: deterministic offline policies, or an LLM.")
    llm_base_url: str = Field("http://127.0.0.1:8000/v1", description="Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp).")
    llm_model: str = Field("gpt-4o-mini", description="Model name sent to the endpoint.")
    llm_api_key: SecretStr = Field(SecretStr("not-needed"), description="API key for the endpoint; also read from "
                                   "OPENAI_API_KEY (MEDBUILDER_LLM_API_KEY wins when both are set).",
                                   validation_alias=AliasChoices("llm_api_key", "MEDBUILDER_LLM_API_KEY",
                                                                 "OPENAI_API_KEY"))
    llm_timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for one model reply.")
    llm_retries: int = Field(4, ge=0, description="Retries of a failed endpoint call (connection, timeout, 429, 5xx).")
    llm_backoff_s: float = Field(1.0, ge=0, description="First backoff delay; doubles on each retry.")
    max_steps: int = Field(30, ge=1, description="Tool calls an agent may make in one attempt.")
    max_debug_loops: int = Field(3, ge=0, description="Retries of a role after its check fails.")
    script_timeout_s: float = Field(900.0, gt=0, description="Wall-clock limit for one run_script call.")
    train_time_limit_s: float | None = Field(None, gt=0, description="Stop training after this many seconds (the template's time_limit_s).")
    train_max_epochs: int | None = Field(None, ge=1, description="The most epochs the Model Trainer may choose (quick trials).")
    train_epochs: int | None = Field(None, ge=1, description="Epochs the Model Trainer must use instead of its own "
                                     "choice (benchmarks of longer training); MEDBUILDER_TRAIN_MAX_EPOCHS still caps it.")
    echo_scripts: bool = Field(True, description="Show the output of agents' scripts (training progress) on the console.")
    tool_output_chars: int = Field(6000, ge=200, description="Tool output longer than this is cut to head and tail.")
    sandbox: Literal["auto", "on", "off"] = Field("auto", description="Isolation of agents' scripts: bubblewrap (on), "
                                                  "bubblewrap if it works else none with a warning (auto), none (off).")
    sandbox_bwrap: str = Field("bwrap", description="The bubblewrap command or its path.")
    sandbox_cpu_s: int = Field(7200, ge=1, description="CPU seconds one run_script command may use (all its processes).")
    sandbox_memory_mib: int = Field(12288, ge=64, description="Memory of one command: data size per process and "
                                                              "resident memory of all its processes, MiB.")
    sandbox_file_mib: int = Field(8192, ge=1, description="Largest file a script may write, MiB.")
    sandbox_processes: int = Field(512, ge=4, description="Processes (and, with a pids cgroup, threads) of one command.")
    sandbox_workspace_mib: int = Field(20480, ge=1, description="How much the workspace may grow during one command, MiB.")
    sandbox_tmp_mib: int = Field(2048, ge=1, description="Size of the sandbox's private /tmp and /dev/shm, MiB.")
    sandbox_uid: int = Field(62391, ge=1, description="When medbuilder runs as root, sandboxed scripts run as this "
                                                      "unprivileged uid and gid (the workspace is handed to it).")
    sandbox_warm_imports: str = Field("torch,monai", description="Modules (comma-separated) a sandboxed Python "
                                      "imports ahead, where the flow knows a script is coming; empty: every "
                                      "script starts a fresh Python.")
    approve: Literal["auto", "terminal", "prefect"] = Field("prefect", description="How gates are answered.")
    gate_timeout_s: int = Field(86400, ge=1, description="How long a paused gate waits for an answer.")
    gate_poll_s: int = Field(2, ge=1, description="How often a paused gate checks for an answer, and how "
                                                 "often the deployments' runner looks for runs to start or resume.")
    max_dataset_rounds: int = Field(3, ge=1, description="Dataset choices the clinician may send back before the run stops.")
    max_refine_rounds: int = Field(2, ge=0, description="Refinement rounds an automatic reviewer (--approve auto) asks for while "
                                                        "an objective is not met.")
    training_limit: str = Field("medbuilder-training", description="Prefect global concurrency limit the Model Trainer "
                                "holds a slot of while it works (no such limit on the server: not throttled; empty: off).")
    training_slots: int = Field(1, ge=1, description="Slots `medbuilder up` gives that limit: trainings at a time.")
    nightly_cron: str = Field("0 2 * * *", description="Cron (UTC) of the deployment reevaluate_delivered/nightly: "
                              "5 fields, or 6 with the seconds last (the Prefect server's scheduler makes its runs).")
    dashboard_url: str = Field("", description="The dashboard's address, linked in gate notifications "
                               "(`medbuilder up` sets it to the dashboard it starts).")
    notify_webhook_url: str = Field("", description="When a gate waits (flow run Paused), POST a JSON notification "
                                    "{subject, body, name} to this URL (empty: no webhook).")

    def resolve_cache_dir(self) -> Path:
        return self.cache_dir.expanduser().resolve()

    def resolve_data_path(self, path: Path) -> Path:
        """A datacard path: absolute as given, relative under ``data_dir``."""
        return path if path.is_absolute() else (self.data_dir / path).resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
