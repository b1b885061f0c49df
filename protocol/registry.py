"""Load, validate and add datacards; every error names the file, the field and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from pydantic import ValidationError

from medbuilder.protocol.datacard import Datacard, Task

CARD_SUFFIXES = (".yaml", ".yml", ".json")

_FIXES = {
    "missing": "add the field",
    "extra_forbidden": "remove it, or check its spelling against the datacard fields",
    "enum": "use one of the allowed values",
    "literal_error": "use one of the allowed values",
    "too_short": "give at least one value (or a longer text)",
    "string_too_short": "write a longer free-text description: folders, files, label columns, sampling rules",
}


class DatacardError(ValueError):
    """A datacard problem, phrased as: file, field, what is wrong, how to fix it."""

    def __init__(self, file: Path | str, field: str, problem: str, fix: str):
        self.file, self.field, self.problem, self.fix = str(file), field, problem, fix
        super().__init__(f"{file}: field '{field}': {problem}. Fix: {fix}.")


def read_card_data(file: Path) -> dict:
    """Parse YAML or JSON; a syntax error names the line."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatacardError(file, "(file)", f"not UTF-8 text (byte {err.object[err.start]:#04x} at position "
                            f"{err.start})", "save the file as UTF-8 (e.g. `iconv -f cp1252 -t utf-8`)") from err
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise DatacardError(file, "(file)", f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}",
                            "correct the JSON syntax at that line") from err
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise DatacardError(file, "(file)", f"malformed YAML{line}: {getattr(err, 'problem', err)}",
                            "correct the YAML syntax at that line") from err
    if not isinstance(data, dict):
        raise DatacardError(file, "(file)", "the file does not hold a mapping of fields",
                            "write one 'field: value' per line (see datacards/br35h.yaml)")
    return data


def load_card(file: Path | str) -> Datacard:
    file = Path(file)
    if file.suffix not in CARD_SUFFIXES:
        raise DatacardError(file, "(file)", f"unsupported suffix '{file.suffix}'", "name it *.yaml or *.json")
    data = read_card_data(file)
    _refuse_draft_marks(file, data)
    try:
        return Datacard.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(card)"
        fix = _FIXES.get(first["type"], "correct the value")
        if field.startswith("tasks"):
            fix = f"use one of: {', '.join(t.value for t in Task)}"
        raise DatacardError(file, field, first["msg"], fix) from err


DRAFT_MARK = "EDIT"


def _refuse_draft_marks(file: Path, data, field: str = "") -> None:
    """A draft card (`medbuilder datacards draft`) marks what the user must write with EDIT."""
    if isinstance(data, dict):
        for key, value in data.items():
            _refuse_draft_marks(file, value, f"{field}.{key}" if field else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            _refuse_draft_marks(file, value, f"{field}.{i}")
    elif isinstance(data, str) and data.lstrip().startswith(DRAFT_MARK):
        raise DatacardError(file, field, f"still says '{data.strip()[:60]}'", "write the value the draft asks for")


def is_empty_folder(root: Path) -> bool:
    """No file in `root` or below, hidden files (.DS_Store) aside."""
    return not any(p.is_file() and not p.name.startswith(".") for p in root.rglob("*"))


def check_path(card: Datacard, file: Path | str, data_dir: Path) -> str | None:
    """A problem with the card's dataset path, or None when the folder is there and holds files."""
    root = card.path if card.path.is_absolute() else data_dir / card.path
    if root.is_dir() and not is_empty_folder(root):
        return None
    if card.prepare:
        state = "is empty" if root.is_dir() else "is missing"
        return f"not prepared yet ({root} {state}): run `medbuilder data prepare {card.prepare}`"
    if root.is_dir():  # a folder made ready for the files: a build refuses it until they are there
        return f"the dataset folder {root} is empty: put the dataset's files in it before a build"
    check_dataset_folder(card, file, root)
    return None


def check_dataset_folder(card: Datacard, file: Path | str, root: Path, run_id: str | None = None) -> None:
    """Raise a DatacardError naming the card file and field 'path' when the dataset folder is missing or empty."""
    then = f"; then `medbuilder resume {run_id}`" if run_id else ""
    prepare = f"run `medbuilder data prepare {card.prepare}`" if card.prepare else None
    if not root.exists():
        fix = prepare or "point 'path' at the dataset root (absolute, or relative to the data folder)"
        raise DatacardError(file, "path", f"folder {root} does not exist", fix + then)
    if not root.is_dir():
        raise DatacardError(file, "path", f"{root} is a file, not a folder",
                            "point 'path' at the folder that holds the dataset" + then)
    if is_empty_folder(root):
        fix = prepare or "put the dataset's files in it, or point 'path' at the folder that holds them"
        raise DatacardError(file, "path", f"the dataset folder {root} is empty (no files)", fix + then)


def card_file_of(datacards_dir: Path, name: str) -> str:
    """The datacard file that defines `name`, for messages (its expected name if it cannot be found)."""
    try:
        return str(Registry(datacards_dir).file_of(name))
    except (KeyError, DatacardError):
        return str(Path(datacards_dir) / f"{name}.yaml")


class Registry:
    """The datacards folder: one file per dataset, names unique."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.suffix in CARD_SUFFIXES) if self.folder.is_dir() else []

    def cards(self) -> dict[str, Datacard]:
        cards: dict[str, Datacard] = {}
        origin: dict[str, Path] = {}
        for file in self.files():
            card = load_card(file)
            if card.name in cards:
                raise DatacardError(file, "name", f"'{card.name}' is already used by {origin[card.name]}",
                                    "give this dataset another name")
            cards[card.name], origin[card.name] = card, file
        return cards

    def get(self, name: str) -> Datacard:
        cards = self.cards()
        if name not in cards:
            raise KeyError(f"unknown dataset '{name}'. Known datasets: {', '.join(sorted(cards)) or '(none)'}. "
                           f"Add one with `medbuilder datacards add FILE`.")
        return cards[name]

    def file_of(self, name: str) -> Path:
        for file in self.files():
            if load_card(file).name == name:
                return file
        raise KeyError(name)

    def add(self, file: Path) -> Path:
        """Validate ``file`` and copy it into the folder; never overwrites."""
        card = load_card(file)
        existing = self.cards()
        if card.name in existing:
            raise DatacardError(file, "name", f"a datacard named '{card.name}' already exists in {self.folder}",
                                "choose another name, or edit the existing card")
        target = self.folder / f"{card.name}{Path(file).suffix}"
        self.folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
        return target
