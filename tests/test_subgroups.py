"""Subgroups: site, scanner, sex and age found in a dataset's table, carried into the index, and metrics per
value with intervals over units and the largest gap (medbuilder.review.subgroups)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from medbuilder.review.subgroups import age_band, markdown, subgroup_metrics


def _table_set(root, n: int = 40):
    """GENERATED noise images and a labels.csv with patient, site, scanner, sex and age columns."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(root / "images" / f"{i:03d}.png")
        rows.append({"file": f"images/{i:03d}.png", "diagnosis": "tumour" if i % 2 else "normal",
                     "patient_id": f"p{i // 2}", "site": "north" if i < n // 2 else "south",
                     "scanner": ["Siemens", "GE", "Philips"][i % 3], "sex": "F" if i % 4 < 2 else "M",
                     "age": str(30 + i)})
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_the_layout_reads_site_scanner_sex_and_age_into_the_index(tmp_path):
    from medbuilder.protocol.datacard import Datacard
    from medbuilder.protocol.indexing import DatasetFacts, IndexJob, apply_layout
    from medbuilder.review.external_data import card_layout

    _table_set(tmp_path / "set")
    card = Datacard(name="two-sites", title="t", path=tmp_path / "set", tasks=["diagnosis"], modality="MRI",
                    dimension="2D", anatomy="brain", label_names=["normal", "tumour"], file_formats=["png"],
                    licence="test", provenance="generated", source="test",
                    description="Generated noise images with a table of labels, sites, scanners, sex and age.")
    facts = DatasetFacts(root=str(tmp_path / "set"), task="diagnosis", dimension="2D",
                         label_names=["normal", "tumour"], normal_class="normal")
    layout = card_layout(card, facts, tmp_path / "work")
    assert set(layout.attributes) == {"site", "scanner", "sex", "age"}
    assert any(line.startswith("attribute site: column 'site'") for line in layout.summary())
    records, _ = apply_layout(IndexJob.of(facts, layout))
    assert len(records) == 40
    assert records[0]["attributes"] == {"site": "north", "scanner": "Siemens", "sex": "F", "age": "30"}


def test_ages_become_bands():
    assert [age_band(v) for v in ("30", "065Y", "41.5", "960M", "80")] == \
        ["under 40", "60-79", "40-59", "80 and over", "80 and over"]
    assert age_band("unknown") is None


def test_a_site_where_the_model_guesses_shows_as_the_largest_gap():
    rng = np.random.default_rng(1)
    records, scores = [], []
    for i in range(240):
        site = "north" if (i // 2) % 2 else "south"  # patient i // 2: two images, one site
        label = "yes" if rng.random() < 0.5 else "no"
        signal = (1.0 if label == "yes" else 0.0) if site == "north" else 0.5
        records.append({"image": f"{i}.png", "label": label, "patient_id": f"p{i // 2}",
                        "attributes": {"site": site, "sex": "F" if i % 4 < 2 else "M"}})
        scores.append(float(np.clip(signal + rng.normal(0, 0.25), 0, 1)))
    result = subgroup_metrics(records, scores, [s >= 0.5 for s in scores], "yes", n_boot=200)
    site = result["site"]
    assert site["values"]["north"]["auroc"] > 0.9 and 0.3 < site["values"]["south"]["auroc"] < 0.7
    assert site["values"]["north"]["n_units"] < site["values"]["north"]["n"]  # patients, not images
    assert site["gap"]["between"] == ["north", "south"] and site["gap"]["ci95"][0] > 0.2
    ci = site["values"]["north"]["auroc_ci95"]
    assert ci[0] <= site["values"]["north"]["auroc"] <= ci[1]
    text = "\n".join(markdown(result, "patient"))
    assert "**site**" in text and "Largest gap: AUROC north minus south" in text
    assert markdown({}) == ["The test records carry no site, scanner, sex, age or group with two values or more."]


@pytest.mark.parametrize("values", [["a"] * 12, ["a"] * 6 + ["b"] * 6])
def test_no_gap_without_two_eligible_subgroups(values):
    records = [{"image": f"{i}", "label": "yes" if i % 2 else "no", "attributes": {"site": v}}
               for i, v in enumerate(values)]
    result = subgroup_metrics(records, [0.5] * len(values), [True] * len(values), "yes", n_boot=20)
    assert (result.get("site") or {}).get("gap") is None


def test_dicom_tags_give_site_scanner_and_sex(tmp_path):
    """Real DICOM files (pydicom's test data) in class folders: the tags that vary become attributes."""
    import shutil

    from pydicom.data import get_testdata_file

    from medbuilder.protocol.datacard import Datacard
    from medbuilder.protocol.indexing import DatasetFacts, IndexJob, apply_layout
    from medbuilder.review.external_data import card_layout

    files = {"no": ["CT_small.dcm", "MR_small.dcm"], "yes": ["JPEG2000.dcm", "MR2_J2KI.dcm"]}
    for label, names in files.items():
        (tmp_path / "set" / label).mkdir(parents=True)
        for name in names:
            shutil.copyfile(get_testdata_file(name), tmp_path / "set" / label / name)
    card = Datacard(name="dicoms", title="t", path=tmp_path / "set", tasks=["diagnosis"], modality="CT",
                    dimension="2D", anatomy="chest", label_names=["no", "yes"], file_formats=["dcm"],
                    licence="test", provenance="real", source="pydicom test files",
                    description="Real DICOM test files from pydicom-data, one folder per class (no, yes).")
    facts = DatasetFacts(root=str(tmp_path / "set"), task="diagnosis", dimension="2D", label_names=["no", "yes"],
                         normal_class="no")
    layout = card_layout(card, facts, tmp_path / "work")
    assert {"site", "scanner", "sex"} <= set(layout.attributes)
    assert layout.attributes["scanner"].tag == "Manufacturer"
    records, _ = apply_layout(IndexJob.of(facts, layout))
    by_name = {r["image"].rsplit("/", 1)[1]: r["attributes"] for r in records}
    assert by_name["CT_small.dcm"]["site"] == "JFK IMAGING CENTER" and by_name["MR_small.dcm"]["sex"] == "F"
