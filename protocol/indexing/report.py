"""What applying a layout found, and the questions weak evidence raises at the dataset gate."""

from __future__ import annotations

from pydantic import BaseModel, Field

MIN_CLASS_IMAGES = 5  # fewer images than this in a class: too few to train and test on; ask
EXAMPLES = 20


class Miss(BaseModel):
    image: str
    field: str
    reason: str


class CrossCheck(BaseModel):
    source: str
    compared: int
    disagree: int
    examples: list[str] = []


class IndexingReport(BaseModel):
    """Counts and evidence of one application of a layout; `questions` are what the gate asks."""

    layout: list[str] = Field(default_factory=list, description="The layout, one line per part.")
    images_found: int = 0
    records: int = 0
    ignored_files: dict[str, int] = Field(default_factory=dict, description="Files that are not images, by extension.")
    links_refused: list[str] = []
    missing_roots: list[str] = []
    unmatched: int = 0
    unmatched_by_field: dict[str, int] = {}
    unmatched_examples: list[Miss] = []
    unmapped_values: dict[str, int] = Field(default_factory=dict, description="Raw label values that are no label name.")
    rows_without_image: dict[str, int] = {}
    rows_without_image_examples: dict[str, list[str]] = {}
    per_class: dict[str, int] = {}
    samples: dict[str, list[str]] = Field(default_factory=dict, description="A few images per class (paths).")
    patients: int | None = None
    predefined_split: dict[str, int] | None = None
    cross_checks: list[CrossCheck] = []
    train: int | None = None
    test: int | None = None
    notes: list[str] = Field(default_factory=list, description="How files were read (a table not in UTF-8).")
    seconds: float = 0.0
    questions: list[str] = []

    def as_text(self) -> str:
        lines = ["Layout:", *(f"  {line}" for line in self.layout),
                 f"{self.images_found} images found, {self.records} indexed, {self.unmatched} not matched."]
        if self.per_class:
            lines.append("per class: " + ", ".join(f"{k}: {v}" for k, v in self.per_class.items()))
        if self.train is not None:
            lines.append(f"split: {self.train} train, {self.test} test"
                         + (" (the dataset's own split)" if self.predefined_split else ""))
        if self.patients:
            lines.append(f"patients: {self.patients}")
        for miss in self.unmatched_examples[:8]:
            lines.append(f"  not matched: {miss.image}: {miss.field}: {miss.reason}")
        for table, count in self.rows_without_image.items():
            shown = ", ".join(self.rows_without_image_examples.get(table, [])[:5])
            lines.append(f"{count} rows of {table} name no image found: {shown}")
        for check in self.cross_checks:
            lines.append(f"label cross-check with {check.source}: {check.disagree} of {check.compared} disagree"
                         + (f", e.g. {'; '.join(check.examples[:3])}" if check.examples else ""))
        if self.ignored_files:
            lines.append("not images (left out): " + ", ".join(f".{k}: {v}" for k, v in self.ignored_files.items()))
        lines += [f"note: {note}" for note in dict.fromkeys(self.notes)]
        for link in self.links_refused[:5]:
            lines.append(f"link not followed (it leads outside the dataset): {link}")
        lines += [f"QUESTION: {q}" for q in self.questions] or ["No question: the evidence is unambiguous."]
        return "\n".join(lines)


def _class_questions(report: IndexingReport, label_names: list[str], normal: str | None, task: str,
                     min_images: int) -> list[str]:
    questions = []
    for name in label_names:
        count = report.per_class.get(name, 0)
        if count == 0 and not (task == "anomaly_detection" and name != normal and report.per_class):
            questions.append(f"the datacard's class '{name}' has no image here: are its images elsewhere, or is "
                             "the label read from the wrong place?")
        elif 0 < count < min_images:
            questions.append(f"class '{name}' has only {count} image(s), too few to train and test on: add images, "
                             "or say whether it should be merged with another class or left out")
    return questions


def weak_evidence(report: IndexingReport, layout_questions: list[str], task: str, label_names: list[str],
                  normal: str | None = None, min_class_images: int = MIN_CLASS_IMAGES) -> list[str]:
    """What the clinician must decide before the index is used; empty when the evidence is unambiguous."""
    questions = list(layout_questions)
    if report.missing_roots:
        questions.append(f"the image folders {report.missing_roots} do not exist in the dataset")
    if report.images_found == 0:
        questions.append("no image file was found under the layout's image folders: where are the images?")
    elif report.records == 0:
        questions.append("no image could be matched to its target; the layout does not fit these files")
    if report.unmapped_values:
        shown = ", ".join(f"'{v}' ({n} images)" for v, n in list(report.unmapped_values.items())[:8])
        questions.append(f"label values {shown} are none of the datacard's labels {label_names}: which label is each "
                         "(label_map), or should those images be left out?")
    other_misses = report.unmatched - sum(report.unmapped_values.values())
    if other_misses > 0 and report.records:
        example = next((m for m in report.unmatched_examples if "label value" not in m.reason), None)
        shown = f", e.g. {example.image}: {example.reason}" if example else ""
        questions.append(f"{other_misses} of {report.images_found} images could not be matched{shown}: are they part "
                         "of the dataset (then say where their target is), or should they be left out?")
    for table, count in report.rows_without_image.items():
        shown = ", ".join(report.rows_without_image_examples.get(table, [])[:3])
        questions.append(f"{count} rows of {table} name no image found in the dataset (e.g. {shown}): are those "
                         "files missing, or do the rows use other names?")
    for check in report.cross_checks:
        if check.disagree:
            questions.append(f"the label and {check.source} disagree for {check.disagree} of {check.compared} images "
                             f"(e.g. {'; '.join(check.examples[:2])}): which one holds the true label?")
    if task in ("diagnosis", "anomaly_detection") and report.records:
        questions += _class_questions(report, label_names, normal, task, min_class_images)
    return list(dict.fromkeys(questions))
