"""Workspace tools on real files: list, read, write, edit, copy, preview_dirs, preview_files."""

from __future__ import annotations

import csv
import json
import tracemalloc

import pytest
from tools_fixtures import roots, ws  # noqa: F401 (fixtures)

from medbuilder.protocol.tools import (
    ToolError, copy_files, edit_file, list_files, preview_dirs, preview_files, read_files, write_file,
)

CODE = (
    "import os\n\ndef load(path):\n    return open(path).read()\n\n"
    "def main():\n    print(load('a.txt'))\n    print(load('b.txt'))\n"
)


def test_list_files_natural_order_and_cap(ws, roots):
    for name in ("img10.png", "img2.png", "img1.png"):
        write_file(ws, f"imgs/{name}", "x")
    listing = list_files(ws, "imgs")
    assert [e.split()[0] for e in listing.entries] == ["img1.png", "img2.png", "img10.png"]
    capped = list_files(ws, ".", recursive=True, max_entries=3)
    assert capped.truncated and len(capped.entries) == 3 and "preview_dirs" in capped.as_text()


def test_write_file_creates_parents_and_reports_overwrite(ws, roots):
    first = write_file(ws, "a/b/c.py", "print(1)\n")
    assert first.created and (roots.workspace / "a/b/c.py").read_text() == "print(1)\n"
    second = write_file(ws, "a/b/c.py", "print(2)\n")
    assert not second.created and "Overwrote" in second.as_text()
    with pytest.raises(ToolError, match="existing folder"):
        write_file(ws, "a/b", "x")


def test_read_files_pages_through_a_long_file_without_losing_a_line(ws):
    lines = [f"line {i}\n" for i in range(1, 2001)]
    write_file(ws, "long.txt", "".join(lines))
    pages, offset = [], 1
    while True:
        (page,) = read_files(ws, ["long.txt"], offset=offset)
        pages.append(page)
        if not page.lines_left:
            break
        assert f"call read_files with offset={page.last_line + 1}" in page.as_text()
        assert page.lines_left == 2000 - page.last_line
        assert page.chars_left == sum(len(line) for line in lines[page.last_line:])
        offset = page.last_line + 1
    assert len(pages) > 1 and all(len(p.text) <= ws.output_chars * 2 for p in pages)
    assert "\n".join(p.text for p in pages) + "\n" == "".join(lines)
    (part,) = read_files(ws, "long.txt", offset=1000, limit=3)
    assert part.text == "line 1000\nline 1001\nline 1002" and "lines 1000-1002" in part.as_text()
    assert "998 more lines" in part.as_text()


def test_files_read_together_share_the_page_and_say_what_is_left(ws):
    for name in ("a.md", "b.md"):
        write_file(ws, f"long-{name}", "".join(f"{name} line {i}\n" for i in range(800)))
    alone = read_files(ws, ["long-a.md"])[0]
    together = read_files(ws, ["long-a.md", "long-b.md"])
    assert all(page.lines_left > alone.lines_left for page in together)
    assert all("call read_files with offset=" in page.as_text() for page in together)


def test_read_files_refuses_binary_and_bad_ranges(ws, roots):
    (roots.workspace / "blob.bin").write_bytes(b"\x89PNG\0\0\0")
    with pytest.raises(ToolError, match="binary file.*load_med_data"):
        read_files(ws, ["blob.bin"])
    write_file(ws, "short.txt", "one\ntwo\n")
    with pytest.raises(ToolError, match="only 2 lines"):
        read_files(ws, ["short.txt"], offset=5)
    with pytest.raises(ToolError, match="limit 0"):
        read_files(ws, ["short.txt"], limit=0)
    two = read_files(ws, ["short.txt", "short.txt"])
    assert len(two) == 2 and two[1].text == "one\ntwo"


def test_edit_file_unique_match_is_replaced(ws, roots):
    write_file(ws, "code.py", CODE)
    result = edit_file(ws, "code.py", "import os\n", "import os\nimport sys\n")
    assert (roots.workspace / "code.py").read_text().startswith("import os\nimport sys\n\ndef load")
    assert result.first_line == 1 and "import sys" in result.snippet


def test_edit_file_no_match_shows_closest_real_lines(ws, roots):
    write_file(ws, "code.py", CODE)
    with pytest.raises(ToolError) as err:
        edit_file(ws, "code.py", "def load(pth):\n    return open(pth).read()", "x")
    message = str(err.value)
    assert "not found" in message and "Did you mean" in message
    assert "     3\tdef load(path):" in message and "     4\t    return open(path).read()" in message
    assert (roots.workspace / "code.py").read_text() == CODE


def test_edit_file_whitespace_only_difference_is_named(ws):
    write_file(ws, "code.py", CODE)
    with pytest.raises(ToolError, match="whitespace is ignored"):
        edit_file(ws, "code.py", "def main():\n  print(load('a.txt'))", "x")


def test_edit_file_refuses_binary_and_missing_files(ws, roots):
    (roots.workspace / "weights.pt").write_bytes(bytes(range(256)))
    with pytest.raises(ToolError, match="not a UTF-8 text file"):
        edit_file(ws, "weights.pt", "a", "b")
    with pytest.raises(ToolError, match="create it with write_file"):
        edit_file(ws, "missing.py", "a", "b")


def test_edit_file_several_matches_lists_lines_and_changes_nothing(ws, roots):
    write_file(ws, "code.py", CODE)
    with pytest.raises(ToolError, match=r"occurs 2 times .*lines 7, 8.*nothing was changed"):
        edit_file(ws, "code.py", "print(load(", "print(read(")
    assert (roots.workspace / "code.py").read_text() == CODE


def test_copy_files_into_folder_refuses_overwrite_unless_asked(ws, roots):
    result = copy_files(ws, [str(roots.refs / "template.py"), str(roots.data / "labels.csv")], "TrainPipeline/")
    assert len(result.copied) == 2 and (roots.workspace / "TrainPipeline/template.py").read_text() == "print('template')\n"
    write_file(ws, "TrainPipeline/template.py", "changed\n")
    with pytest.raises(ToolError, match="already exist.*overwrite=true"):
        copy_files(ws, [str(roots.refs / "template.py")], "TrainPipeline")
    assert (roots.workspace / "TrainPipeline/template.py").read_text() == "changed\n"
    copy_files(ws, [str(roots.refs / "template.py")], "TrainPipeline", overwrite=True)
    assert (roots.workspace / "TrainPipeline/template.py").read_text() == "print('template')\n"


def test_copy_folder_skips_links_leading_out(ws, roots):
    (roots.refs / "pkg" / "sub").mkdir(parents=True)
    (roots.refs / "pkg" / "sub" / "model.py").write_text("net = 1\n")
    (roots.refs / "pkg" / "leak.txt").symlink_to(roots.outside / "secret.txt")
    result = copy_files(ws, [str(roots.refs / "pkg")], "copied_pkg")
    assert (roots.workspace / "copied_pkg/sub/model.py").read_text() == "net = 1\n"
    assert not (roots.workspace / "copied_pkg/leak.txt").exists() and len(result.skipped) == 1
    with pytest.raises(ToolError, match="into itself"):
        copy_files(ws, ["copied_pkg"], "copied_pkg/inner/")


def test_preview_dirs_counts_per_folder_in_natural_order(ws, roots):
    for label in ("yes", "no"):
        for i in (10, 2, 1, 33):
            (roots.data / label / f"img{i}.jpg").parent.mkdir(exist_ok=True)
            (roots.data / label / f"img{i}.jpg").write_bytes(b"x")
    (roots.data / "yes" / "masks").mkdir()
    (roots.data / "yes" / "masks" / "img1.nii.gz").write_bytes(b"x")
    preview = preview_dirs(ws, str(roots.data), max_names=3)
    by_name = {f.folder: f for f in preview.folders}
    assert [f.folder for f in preview.folders] == [".", "no", "yes", "yes/masks"]
    assert by_name["yes"].first_files == ["img1.jpg", "img2.jpg", "img10.jpg"]
    assert by_name["yes"].files == 4 and by_name["yes"].files_below == 5
    assert by_name["yes/masks"].extensions == {".nii.gz": 1} and by_name["."].files_below == 10
    assert "img1.jpg, img2.jpg, img10.jpg, ... (+1)" in preview.as_text()
    shallow = preview_dirs(ws, str(roots.data), max_depth=0)
    assert len(shallow.folders) == 1 and shallow.folders[0].files_below == 10
    (roots.data / "yes" / "loop").symlink_to(roots.data, target_is_directory=True)
    looped = {f.folder: f for f in preview_dirs(ws, str(roots.data)).folders}
    assert looped["yes"].links_to_folders == 1 and looped["."].files_below == 10


def test_preview_files_streams_a_large_csv(ws, roots):
    big = roots.data / "big.csv"
    with big.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "note"])
        writer.writerows([f"img{i}.png", i % 2, "a, quoted\nnote" if i == 3 else "plain"] for i in range(200_000))
    size = big.stat().st_size
    tracemalloc.start()
    preview = preview_files(ws, str(big), n=5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert preview.summary["rows"] == 200_000 and preview.summary["columns"] == ["image", "label", "note"]
    assert preview.summary["head"][0] == ["img0.png", "0", "plain"] and len(preview.summary["head"]) == 5
    assert "200,000 data rows" in preview.as_text()
    assert peak < size / 10, f"preview held {peak} bytes for a {size}-byte file: not streamed"


def test_preview_files_streams_large_json_and_reads_jsonl_and_text(ws, roots):
    items = [{"image": f"yes/y{i}.jpg", "label": i % 2, "tags": list(range(5))} for i in range(60_000)]
    (roots.data / "train.json").write_text(json.dumps(items, indent=1))
    size = (roots.data / "train.json").stat().st_size
    tracemalloc.start()
    array = preview_files(ws, str(roots.data / "train.json"), n=3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert array.summary["type"] == "array" and array.summary["length"] == 60_000 and array.summary["head"][1] == items[1]
    assert peak < size / 10
    (roots.workspace / "label_dict.json").write_text(json.dumps({"no": 0, "yes": 1, "splits": {"train": [1] * 500}}))
    obj = preview_files(ws, "label_dict.json")
    assert obj.summary["keys"] == ["no", "yes", "splits"] and obj.summary["length"] == 3
    assert "'splits': object with 1 keys" in obj.text
    (roots.workspace / "rows.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(1234)))
    assert preview_files(ws, "rows.jsonl", n=2).summary == {"records": 1234, "head": [{"i": 0}, {"i": 1}], "keys": ["i"]}
    (roots.workspace / "notes.txt").write_text("".join(f"word{i} word\n" for i in range(500)))
    text = preview_files(ws, "notes.txt", n=2)
    assert text.summary["lines"] == 500 and text.summary["words"] == 1000 and len(text.summary["head"]) == 8


def test_preview_files_reports_bad_json_and_refuses_images(ws, roots):
    (roots.workspace / "broken.json").write_text('[{"a": 1}, {"a": ')
    with pytest.raises(ToolError, match="not valid JSON"):
        preview_files(ws, "broken.json")
    (roots.workspace / "scan.nii.gz").write_bytes(b"x")
    with pytest.raises(ToolError, match="load_med_data"):
        preview_files(ws, "scan.nii.gz")
