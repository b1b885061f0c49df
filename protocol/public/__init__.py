"""Public datasets users already have on disk: a datacard template and the published layout of each.

A template (``cards/NAME.yaml``) holds a datacard without its ``path``, the files a download must
contain (``requires``), the tables found by pattern (``find``) and, for multi-label sets, the findings
a binary card can be made for (``findings``). ``install`` points a template at a user's folder:
it checks the required files, applies the layout with the shared indexer (every class must get
images), and writes the card into the datacards folder, where the Task Manager can choose it.
Nothing in the user's folder is written.

A template's card is not in the datacards folder until then, so a dataset nobody has downloaded
never competes with the ones that are there. ``replicas.make_replica`` writes a generated miniature
of each published layout (a few images, real label rows where torchxrayvision ships them); a card
installed from one says it is a generated replica.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from medbuilder.protocol.datacard import Datacard
from medbuilder.protocol.indexing import DatasetFacts, IndexingReport, IndexJob, LayoutFailure, apply_layout

REPLICA_MARK = "GENERATED_REPLICA.txt"


class PublicDatasetError(ValueError):
    """The folder is not (or not all of) the named public dataset; the message says what is missing and the fix."""


@dataclass(frozen=True)
class Template:
    name: str
    data: dict

    @property
    def card(self) -> dict:
        return self.data["card"]

    @property
    def findings(self) -> dict | None:
        return self.data.get("findings")

    @property
    def title(self) -> str:
        """The card's title, for the default finding of a multi-label set."""
        return _fill(self.card["title"], finding_words(self, None))

    @property
    def published(self) -> str:
        return self.data.get("published", "")


@cache
def templates() -> dict[str, Template]:
    """Every public dataset's template, by name."""
    folder = resources.files(__package__) / "cards"
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text(encoding="utf-8"))
            found[data["name"]] = Template(data["name"], data)
    return found


def template(name: str) -> Template:
    try:
        return templates()[name]
    except KeyError:
        raise KeyError(f"unknown public dataset '{name}'. Public datasets: {', '.join(sorted(templates()))}") from None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _fill(value, words: dict[str, str]):
    if isinstance(value, str):
        for key, word in words.items():
            value = value.replace(f"<<{key}>>", word)
        return value
    if isinstance(value, list):
        return [_fill(v, words) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, words) for k, v in value.items()}
    return value


def finding_words(tpl: Template, finding: str | None) -> dict[str, str]:
    """The words a multi-label template is filled with for one finding (its default when None)."""
    spec = tpl.findings
    if spec is None:
        if finding is not None:
            labels = ", ".join(tpl.card.get("label_names") or ["reports"])
            raise PublicDatasetError(f"'{tpl.name}' has one label set ({labels}); leave out --finding")
        return {}
    chosen = finding or spec["default"]
    by_key = {f.lower(): f for f in spec["choices"]}
    if chosen.lower() not in by_key:
        raise PublicDatasetError(f"'{tpl.name}' has no finding '{chosen}'. Findings: {', '.join(spec['choices'])}")
    chosen = by_key[chosen.lower()]
    return {"finding": chosen, "finding_lower": chosen.lower(), "finding_re": re.escape(chosen),
            "finding_slug": slug(chosen)}


def _found(root: Path, tpl: Template) -> dict[str, str]:
    """Placeholders filled from the folder: the first file each `find` pattern matches, relative to the root."""
    words = {}
    for key, pattern in tpl.data.get("find", {}).items():
        matches = sorted(p for p in root.glob(pattern) if p.is_file())
        if not matches:
            raise PublicDatasetError(f"{root} has no file matching {pattern} ({tpl.name}'s {key}). "
                                     f"The published layout: {tpl.published}")
        words[key] = matches[0].relative_to(root).as_posix()
    return words


def check_required(root: Path, tpl: Template) -> None:
    missing = [need["what"] if need["what"] == need["glob"] else f"{need['what']} ({need['glob']})" for need in tpl.data.get("requires", [])
               if next(iter(root.glob(need["glob"])), None) is None]
    if missing:
        raise PublicDatasetError(
            f"{root} does not look like {tpl.title}: missing {'; '.join(missing)}. The published layout: "
            f"{tpl.published} Point --from at the folder that holds it (the download's top folder).")


def card_for(tpl: Template, root: Path, finding: str | None = None) -> Datacard:
    """The template filled for the folder `root` (and the finding, for a multi-label set)."""
    root = Path(root).resolve()
    words = {**finding_words(tpl, finding), **_found(root, tpl)}
    data = _fill(tpl.card, words)
    data["path"] = str(root)
    if (root / REPLICA_MARK).is_file():
        data["provenance"] = "generated"
        data["title"] = "Generated replica of " + data["title"]
        data["description"] = ("A GENERATED miniature replica of the published layout (made by `medbuilder data "
                               "replica`): its pixels are generated, not patients' images.\n" + data["description"])
    return Datacard.model_validate(data)


class _CardDumper(yaml.SafeDumper):
    """Writes multi-line text (descriptions) as YAML blocks, as a person would."""


_CardDumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


@dataclass(frozen=True)
class Installed:
    card: Datacard
    file: Path
    report: IndexingReport


def validate(card: Datacard) -> IndexingReport:
    """Apply the card's layout to its folder; raise PublicDatasetError unless every label (or any record) is found."""
    facts = DatasetFacts(root=str(card.path), task=card.tasks[0].value, dimension=card.dimension,
                         label_names=card.label_names, min_class_images=1)
    try:
        records, report = apply_layout(IndexJob.of(facts, card.layout))
    except LayoutFailure as err:
        raise PublicDatasetError(f"{card.path}: {err}") from None
    misses = "; ".join(f"{m.image}: {m.reason}" for m in report.unmatched_examples[:3])
    if not records:
        raise PublicDatasetError(f"{card.path}: the published layout of {card.title} finds no usable image "
                                 f"({report.images_found} image files; {misses or 'none matched'})")
    empty = [name for name in card.label_names if not report.per_class.get(name)]
    if card.layout.label is not None and empty:
        raise PublicDatasetError(f"{card.path}: no image is labelled {empty} ({report.per_class}); check that the "
                                 "label table is the one published with these images")
    return report


def install(name: str, folder: Path, datacards_dir: Path, finding: str | None = None,
            converted_to: Path | None = None, on_item=None) -> Installed:
    """Check `folder` against the public dataset `name` and write its datacard into `datacards_dir`.

    A dataset published in files medbuilder cannot read (KneeMRI's pickles) is first converted into the new
    folder `converted_to`, and its card points there."""
    tpl = template(name)
    finding_words(tpl, finding)  # a wrong --finding is reported before the folder is read
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise PublicDatasetError(f"{root} is not a folder; give the folder your {tpl.title} download is in")
    check_required(root.resolve(), tpl)
    target = Path(datacards_dir) / f"{_fill(tpl.card['name'], finding_words(tpl, finding))}.yaml"
    if target.exists():
        raise PublicDatasetError(f"{target} exists: this card is installed already. Remove that file to install "
                                 "it again")
    notes = []
    if tpl.data.get("convert"):
        root, notes = _convert(tpl, root.resolve(), converted_to, on_item)
    card = card_for(tpl, root, finding)
    report = validate(card)
    report.notes.extend(notes)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(card.model_dump(mode="json", exclude_none=True), Dumper=_CardDumper, sort_keys=False,
                     allow_unicode=True, width=100)
    chosen = f" --finding '{finding}'" if finding else ""
    converted = f" --to {root}" if tpl.data.get("convert") else ""
    target.write_text(f"# Installed by `medbuilder data prepare {name} --from {folder}{chosen}{converted}`\n" + text,
                      encoding="utf-8")
    return Installed(card, target, report)


def _convert(tpl: Template, source: Path, target: Path | None, on_item) -> tuple[Path, list[str]]:
    from medbuilder.protocol.public.convert import CONVERTERS
    from medbuilder.protocol.public.pickled import UnsafePickleError

    if target is None:
        raise PublicDatasetError(f"{tpl.name} is published in files medbuilder converts first: give a new folder "
                                 "for the converted copy (--to DIR)")
    target = Path(target).expanduser().resolve()
    if target == source or source in target.parents:
        raise PublicDatasetError(f"{target} is inside the download {source}; give a folder outside it")
    if target.exists() and any(target.iterdir()):
        raise PublicDatasetError(f"{target} is not empty; give a new folder for the converted copy")
    target.mkdir(parents=True, exist_ok=True)
    try:
        notes = CONVERTERS[tpl.data["convert"]](source, target, on_item)
    except UnsafePickleError as err:
        raise PublicDatasetError(f"{err}. Nothing was loaded from it; the partial copy is in {target}") from None
    if (source / REPLICA_MARK).is_file():
        (target / REPLICA_MARK).write_bytes((source / REPLICA_MARK).read_bytes())
    return target, notes
