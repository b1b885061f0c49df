"""The Data Engineer on every generated layout family (real images arranged as hospitals export them).

One generated tree and one Data Engineer run per family, shared by the module: no family may be
indexed wrong without a question, every bad variant must end as a question that names its problem,
and at least 80% of the good families must be indexed with no question (the issue's targets).
"""

from __future__ import annotations

import json
import re

import pytest

from medbuilder.bench.layout_families import FAMILIES, Expected, generate
from medbuilder.bench.layouts import CORRECT_SHARE_TARGET, RoleResult, disagreements, score_family, totals

GOOD = [name for name, spec in FAMILIES.items() if spec.kind == "good"]
BAD = [name for name, spec in FAMILIES.items() if spec.kind == "bad"]


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """Every family generated once, in one tree shared by the module."""
    base = tmp_path_factory.mktemp("layout-families")
    return [generate(spec, base / "data") for spec in FAMILIES.values()]


@pytest.fixture(scope="module")
def rows(families, tmp_path_factory):
    """Every family scored once: family name -> row."""
    runs = tmp_path_factory.mktemp("layout-runs")
    return {family.name: score_family(family, runs) for family in families}


def test_there_are_enough_families_of_each_kind():
    assert len(GOOD) >= 12 and len(BAD) >= 4


def test_every_truth_names_files_that_exist(families):
    """The truth is about the files the generator wrote: images, masks and left-out files all exist."""
    from medbuilder.protocol.datacard import Datacard

    for family in families:
        root = family.root
        for rel, expected in family.truth.images.items():
            assert (root / rel).exists(), (family.name, rel)
            assert expected.mask is None or (root / expected.mask).is_file(), (family.name, expected.mask)
        assert all((root / rel).is_file() for rel in family.truth.left_out), family.name
        card = Datacard.model_validate(family.card)
        assert "generat" in card.title and "generator" in card.source and card.provenance == "real"


def test_the_scorer_sees_a_wrong_label_a_lost_patient_and_a_stray_file(tmp_path):
    """Why: a scorer that misses disagreements would report `correct` for a wrong index."""
    family = generate(FAMILIES["patient-folders-table"], tmp_path)
    root, truth = family.root, family.truth
    records = [{"image": str(root / rel), "label": e.label, "patient_id": e.patient} for rel, e in truth.images.items()]
    matching = RoleResult([], True, [], [], records[:-4], records[-4:])
    assert disagreements(truth, matching, root) == []
    first = records[0]
    wrong = [{**first, "label": "yes" if first["label"] == "no" else "no"}, *records[1:]]
    lost = [{k: v for k, v in r.items() if k != "patient_id"} for r in records]
    stray = [*records, {"image": str(root / "patients.csv"), "label": "no"}]
    for changed, words in ((wrong, "wrong labels"), (lost, "no patient id"), (stray, "should not be")):
        found = disagreements(truth, RoleResult([], True, [], [], changed, []), root)
        assert any(words in d for d in found), (words, found)
    split_truth = truth.__class__(truth.task, {rel: Expected(label=e.label, split="test")
                                               for rel, e in truth.images.items()})
    assert any("wrong splits" in d for d in disagreements(split_truth, matching, root))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_no_family_is_indexed_wrong(rows, name):
    row = rows[name]
    assert row.outcome != "wrong", f"{name}: {row.note}\nlayout: {row.layout}"


@pytest.mark.parametrize("name", BAD)
def test_a_bad_variant_ends_as_a_question_naming_its_problem(rows, name):
    row, problem = rows[name], FAMILIES[name].build.__doc__
    assert row.outcome == "asked", f"{name} ({problem.strip()}): {row.outcome}: {row.note}\nlayout: {row.layout}"
    assert row.problem_named, f"{name}: no question names the problem: {row.questions}"


def test_most_good_families_are_indexed_with_no_question(rows):
    good = [rows[name] for name in GOOD]
    correct = [r for r in good if r.outcome == "correct"]
    missed = "\n".join(f"{r.family}: {r.outcome}: {r.note}" for r in good if r.outcome != "correct")
    assert len(correct) >= CORRECT_SHARE_TARGET * len(good), f"{len(correct)} of {len(good)} correct:\n{missed}"


def test_totals_count_the_rows(rows):
    figures = totals(list(rows.values()))
    assert figures["families"] == len(FAMILIES) and figures["good"] == len(GOOD) and figures["bad"] == len(BAD)
    assert figures["wrong"] == sum(r.outcome == "wrong" for r in rows.values())


def test_bench_layouts_command_prints_the_table_and_writes_its_files(tmp_path):
    from typer.testing import CliRunner

    from medbuilder.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["bench", "layouts", "--family", "prefix-code", "--out", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    assert re.search(r"\| prefix-code \| correct \| \w+", done.output) and "indexed wrong:" in done.output
    saved = json.loads((tmp_path / "out" / "layouts.json").read_text())
    assert [r["family"] for r in saved["rows"]] == ["prefix-code"] and "totals" in saved
    assert (tmp_path / "out" / "layouts.md").is_file() and (tmp_path / "out" / "data" / "prefix-code").is_dir()
    unknown = runner.invoke(app, ["bench", "layouts", "--family", "chest-ct"])
    assert unknown.exit_code == 2 and "unknown layout families" in unknown.output
