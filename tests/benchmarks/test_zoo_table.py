"""The README's zoo table is generated from the committed run outputs, not typed by hand."""

from __future__ import annotations

import json
from pathlib import Path, PureWindowsPath

import pytest

from benchmarks.zoo_table import BEGIN, END, REPO, render, repo_relative


def test_readme_and_results_md_hold_exactly_the_table_rendered_from_results_json() -> None:
    results = json.loads((REPO / "models" / "zoo" / "results.json").read_text())
    table = render(results)
    readme = (REPO / "README.md").read_text()
    assert readme.split(BEGIN, 1)[1].split(END, 1)[0].strip() == table
    assert (REPO / "models" / "zoo" / "RESULTS.md").read_text() == "# Model zoo results\n\n" + table + "\n"
    for key in ("teacher", "ssd-kd"):
        for file in ("int8", "int8_float_io"):
            f = results["rows"][key][file]
            assert f["gate"] in ("passed", "failed")
            low, high = f["bacc_change_ci_pt"]
            assert low <= f["bacc_change_pt"] <= high
        assert results["rows"][key]["val"]["orientations"] >= 1


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_committed_results_name_no_absolute_path() -> None:
    results = json.loads((REPO / "models" / "zoo" / "results.json").read_text())
    absolute = [s for s in _strings(results) if Path(s).is_absolute() or PureWindowsPath(s).drive]
    assert not absolute, f"models/zoo/results.json holds absolute paths: {absolute}"


def test_repo_relative_paths_are_relative_to_the_repo_root_whatever_the_working_directory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert repo_relative(REPO.parent / "shared" / "data" / "ham") == "../shared/data/ham"
    assert repo_relative(REPO / "data" / "isic2019_sample") == "data/isic2019_sample"
    monkeypatch.chdir(REPO / "data")  # a relative --data is taken from where the generator was started
    assert repo_relative("isic2019_sample") == "data/isic2019_sample"


def test_the_calibration_column_says_t_is_1_for_checkpoints_without_one() -> None:
    results = json.loads((REPO / "models" / "zoo" / "results.json").read_text())
    rows = results["rows"]
    rows["teacher"]["calibration"] = {"temperature": 1.37, "ece_before": 0.0912, "ece_after": 0.0234, "fitted": True}
    rows["ssd-kd"]["calibration"] = {"temperature": 1.0, "ece_before": 0.071, "ece_after": 0.071, "fitted": False}
    rows["kd"].pop("calibration", None)
    lines = {line.split(" | ")[0]: line for line in render(results).splitlines() if line.startswith("| ")}
    assert "| 1.37: 0.091 → 0.023 |" in lines["| teacher"]
    assert "| 1 (none fitted): 0.071 |" in lines["| SSD-KD"] and "| 1 (none fitted): — |" in lines["| KD"]
    assert "T: test ECE at T=1 → T" in lines["| model"]
