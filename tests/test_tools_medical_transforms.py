"""normalize_image, verify_report (real IU-Xray reports) and augment_image (real Br35H MRI JPEG)."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file
from tools_fixtures import BR35H, IU_XRAY_REPORTS, roots, ws  # noqa: F401 (fixtures)

from medbuilder.protocol.tools import (
    PRESETS, ToolError, Workspace, augment_image, build_augmentation, check_report, load_medical, normalize_array,
    normalize_image, verify_report,
)

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


@pytest.fixture
def med_ws(roots) -> Workspace:
    return Workspace.create(roots.workspace, [roots.data, BR35H, CT_SMALL.parent], output_chars=3000, script_timeout_s=30)


@pytest.fixture(scope="module")
def iu_reports() -> list[tuple[str, str]]:
    """The first 200 real IU-Xray XML reports, read from the archive (never extracted)."""
    reports = []
    with tarfile.open(IU_XRAY_REPORTS) as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".xml"):
                reports.append((member.name, archive.extractfile(member).read().decode("utf-8")))
            if len(reports) == 200:
                break
    return reports


def test_ct_windows_map_hounsfield_units_to_unit_range():
    hu = np.array([-1000.0, -160, 40, 240, 1000])
    assert normalize_array(hu, "ct_soft_tissue").tolist() == pytest.approx([0, 0, 0.5, 1, 1])
    assert normalize_array(np.array([-1350.0, -600, 150]), "ct_lung").tolist() == pytest.approx([0, 0.5, 1])
    assert {"ct_soft_tissue", "ct_lung", "ct_bone", "mri_percentile", "xray_minmax"} <= set(PRESETS)


def test_mri_percentile_zscore_and_xray_invert():
    values = np.arange(1000, dtype=np.float32)
    scaled = normalize_array(values, "mri_percentile")
    assert scaled.min() == 0 and scaled.max() == 1 and scaled[500] == pytest.approx(0.5, abs=0.01)
    z = normalize_array(np.r_[np.zeros(10), np.arange(1, 101)].astype(np.float32), "mri_zscore")
    assert z[10:].mean() == pytest.approx(0, abs=1e-5) and z[10:].std() == pytest.approx(1, abs=1e-4)
    assert normalize_array(np.array([0.0, 5, 10]), "xray_minmax", invert=True).tolist() == [1, 0.5, 0]
    with pytest.raises(ToolError, match="(?s)unknown preset 'ct_soft'.*ct_soft_tissue"):
        normalize_array(values, "ct_soft")


def test_normalize_tool_on_real_ct_and_on_nifti_keeps_affine(med_ws, roots):
    result = normalize_image(med_ws, str(CT_SMALL), "ct_soft_tissue")
    saved = np.load(roots.workspace / result.output)
    assert result.output == "normalized/CT_small_ct_soft_tissue.npy" and saved.shape == (128, 128)
    assert saved.min() == 0 and saved.max() == 1 and result.before["min"] == -896 and not result.warnings
    assert 0 < result.clipped[0] < 1 and "clipped:" in result.as_text()
    affine = np.diag([0.9, 0.9, 3.0, 1])
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 4)).astype(np.float32) * 900, affine),
             str(roots.workspace / "t1.nii.gz"))
    out = normalize_image(med_ws, "t1.nii.gz", "mri_percentile", output_path="prep/t1_norm.nii.gz")
    assert np.allclose(nib.load(str(roots.workspace / "prep/t1_norm.nii.gz")).affine, affine)


def test_ct_window_on_an_8bit_image_warns(med_ws):
    result = normalize_image(med_ws, str(BR35H / "no" / "no1.jpg"), "ct_lung")
    assert any("not Hounsfield units" in w for w in result.warnings)


def test_verify_report_on_real_iu_xray_reports(iu_reports):
    with_xxxx = [(name, xml) for name, xml in iu_reports if "XXXX" in xml]
    assert len(with_xxxx) > 50
    for name, xml in iu_reports:
        check = check_report(xml)
        assert "XXXX" not in check.cleaned_text, name
        assert "COMPARISON" not in check.cleaned_text and "INDICATION" not in check.cleaned_text
        for label, kept in (("FINDINGS", check.findings), ("IMPRESSION", check.impression)):
            raw = re.search(rf'Label="{label}">([^<]*)<', xml)
            words = set(re.findall(r"[a-z]{3,}", raw.group(1).lower())) - {"xxxx"} if raw else set()
            assert words <= set(re.findall(r"[a-z]{3,}", kept.lower())), f"{name}: {label} lost words"
            assert (label in check.missing) == (not words), name
    name, xml = next((n, x) for n, x in with_xxxx if '"FINDINGS">' in x and "XXXX" in x.split('"FINDINGS">')[1].split("<")[0])
    check = check_report(xml)
    assert check.removed["de-identification tokens"] > 0 and check.findings and "XXXX" not in check.findings


def test_verify_report_plain_text_noise_and_missing_sections(med_ws, roots):
    text = ("EXAMINATION: CHEST PA AND LAT\nINDICATION: XXXX-year-old with cough\n______________\n"
            "FINDINGS:  The lungs are   clear .  No effusion.\x0c\n---------\nIMPRESSION: No acute process XXXX.\n")
    check = verify_report(med_ws, text=text)
    assert check.findings == "The lungs are clear. No effusion." and check.impression == "No acute process."
    assert check.sections_dropped == ["EXAMINATION", "INDICATION"] and check.ok
    assert check.removed == {"de-identification tokens": 1, "separators": 1, "odd characters": 1}  # in the kept sections
    (roots.workspace / "r.txt").write_text("Findings: Heart size normal.")
    only = verify_report(med_ws, path="r.txt")
    assert only.missing == ["IMPRESSION"] and "INCOMPLETE: missing or empty IMPRESSION" in only.as_text()
    with pytest.raises(ToolError, match="exactly one of text"):
        verify_report(med_ws)


def test_augment_pipelines_follow_the_modality():
    mri = build_augmentation("MRI", "3D")
    assert [s.transform for s in mri.steps][:2] == ["RandFlip", "RandRotate"] and "RandBiasField" in mri.as_text()
    ct = build_augmentation("ct", 3)
    assert not {"RandShiftIntensity", "RandScaleIntensity", "RandBiasField"} & {s.transform for s in ct.steps}
    xray = build_augmentation("x-ray", "2D")
    assert "RandFlip" not in {s.transform for s in xray.steps}
    assert build_augmentation("cxr", "2D", allow_lr_flip=True).steps[0].args == {"spatial_axis": 1, "prob": 0.5}
    assert len(mri.compose.transforms) == len(mri.steps)
    with pytest.raises(ToolError, match="use dimension='2D'"):
        build_augmentation("xray", "3D")
    with pytest.raises(ToolError, match="unknown modality 'pet'"):
        build_augmentation("pet", "2D")


def test_augment_tool_applies_to_a_real_mri_jpeg_reproducibly(med_ws, roots):
    source = str(BR35H / "yes" / "y3.jpg")
    original = load_medical(source).array
    outputs = []
    for seed in range(3):
        plan = augment_image(med_ws, "mri", "2D", path=source, output_path=f"aug/y3_{seed}.npy", seed=seed)
        assert plan.output == f"aug/y3_{seed}.npy" and "RandBiasField" in plan.as_text()
        outputs.append(np.load(roots.workspace / plan.output))
    assert all(o.shape == original.shape for o in outputs)
    assert any(not np.allclose(o, original) for o in outputs)
    again = augment_image(med_ws, "mri", "2D", path=source, output_path="aug/again.npy", seed=1)
    assert np.array_equal(np.load(roots.workspace / again.output), outputs[1])
