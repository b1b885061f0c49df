"""The installed `medbuilder` command answers --help on every subcommand."""

import subprocess
import sys
from pathlib import Path

import pytest

MEDBUILDER = Path(sys.executable).parent / "medbuilder"
SUBCOMMANDS = [
    [], ["datacards"], ["datacards", "list"], ["datacards", "show"], ["datacards", "validate"],
    ["datacards", "add"], ["data"], ["data", "list"], ["data", "prepare"], ["template"],
    ["template", "list"], ["template", "train"], ["build"], ["resume"], ["approve"], ["stage"], ["predict"],
    ["runs"], ["bench"], ["bench", "shortcut"], ["llm", "check"], ["up"], ["down"], ["status"], ["watch"],
]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "medbuilder")
def test_help(words):
    out = subprocess.run([str(MEDBUILDER), *words, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage: medbuilder" in out.stdout
