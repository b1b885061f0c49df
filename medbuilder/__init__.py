"""medbuilder: a clinician's plain-language request in, a trained, evaluated, explained model out."""

from pathlib import Path

__version__ = "0.1.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
