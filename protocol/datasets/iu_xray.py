"""IU-Xray (Open-i) radiology reports (real, text only): the raw XML plus one parsed JSON.

Layout::

    iu-xray-reports/
      reports.json     list of 3,955 report objects (see REPORT_FIELDS), sorted by report number
      xml/1.xml ...    the original XML files, byte for byte (licence CC BY-NC-ND 4.0 in each)

There are no images: each report names its image ids, but the images are not shipped.
"""

from __future__ import annotations

import re
import tarfile
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

from medbuilder.protocol.datacard import Task
from medbuilder.protocol.datasets.base import Item, NoImagesError, Recipe, check_task, json_bytes, package_data

REPORT_FIELDS = ("uid", "xml_file", "indication", "comparison", "findings", "impression",
                 "mesh_major", "mesh_automatic", "image_ids")


def source_archive() -> Path:
    return package_data("torchxrayvision", "data", "NLMCXR_reports.tgz", hint="torchxrayvision==1.5.7")


@lru_cache(maxsize=1)
def _members(archive: Path) -> dict[str, bytes]:
    """XML file name -> bytes, in report-number order (read once per process)."""
    out = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".xml"):
                out[Path(member.name).name] = tar.extractfile(member).read()
    return dict(sorted(out.items(), key=lambda kv: int(re.sub(r"\D", "", kv[0]) or 0)))


def _text(node: ET.Element | None) -> str | None:
    text = "".join(node.itertext()).strip() if node is not None else ""
    return text or None


def parse_report(name: str, data: bytes) -> dict:
    """One XML report as a dict with REPORT_FIELDS; empty sections are None."""
    root = ET.fromstring(data)
    sections = {a.get("Label", "").lower(): _text(a) for a in root.iter("AbstractText")}
    mesh = root.find("MeSH")
    return {
        "uid": root.find("uId").get("id"),
        "xml_file": f"xml/{name}",
        "indication": sections.get("indication"),
        "comparison": sections.get("comparison"),
        "findings": sections.get("findings"),
        "impression": sections.get("impression"),
        "mesh_major": [_text(m) for m in mesh.findall("major") if _text(m)] if mesh is not None else [],
        "mesh_automatic": [_text(m) for m in mesh.findall("automatic") if _text(m)] if mesh is not None else [],
        "image_ids": [img.get("id") for img in root.findall("parentImage")],
    }


def plan(limit: int | None) -> list[Item]:
    members = _members(source_archive())
    names = list(members)[:limit]
    items = [Item(f"xml/{n}", make=lambda n=n: members[n]) for n in names]
    items.append(Item("reports.json", make=lambda: json_bytes([parse_report(n, members[n]) for n in names])))
    return items


def sources() -> list[Path]:
    return [source_archive()]


def index(root: Path, task: Task):
    raise NoImagesError("iu-xray-reports holds report text only (has_images: false): the image ids in "
                        "reports.json point at images that are not shipped, so no image-to-report index "
                        "can be made. Use a dataset with images for report generation (e.g. the generated "
                        "synth-cxr-reports), or use reports.json for text-side work only")


RECIPE = Recipe(
    name="iu-xray-reports",
    version="1",
    summary="IU-Xray (Open-i) chest X-ray reports, 3,955 XML + parsed JSON, no images (real)",
    tasks=(Task.report_generation,),
    generated=False,
    source="torchxrayvision 1.5.7 (PyPI), file torchxrayvision/data/NLMCXR_reports.tgz",
    plan=plan,
    sources=sources,
    index=lambda root, task: index(root, check_task(RECIPE, task)),
    limit_note="limit: the first N reports by report number",
)
