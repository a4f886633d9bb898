"""The README's zoo table is generated from the committed run outputs, not typed by hand."""

from __future__ import annotations

import json
from pathlib import Path, PureWindowsPath

import pytest

from benchmarks.zoo_table import (
    BEGIN,
    END,
    INT8_FILES,
    REPO,
    evaluation_figures,
    paired_changes,
    render,
    repo_relative,
    zoo_files,
)


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


def test_test_figures_and_paired_changes_are_those_of_the_committed_evaluation_files() -> None:
    zoo = REPO / "models" / "zoo"
    results = json.loads((zoo / "results.json").read_text())
    for key, row in results["rows"].items():
        figures = evaluation_figures(zoo_files(zoo, key)[1])
        assert {k: row[k] for k in figures} == figures
        low, high = row["test"]["balanced_accuracy_ci95"]
        assert low < row["test"]["balanced_accuracy"] < high
    assert paired_changes(zoo, list(results["rows"])) == results["paired"]
    ssd_kd = results["rows"]["ssd-kd"]["test"]["balanced_accuracy"]
    for key, c in results["paired"]["rows"].items():
        assert c["change_pt"] == pytest.approx(100 * (ssd_kd - results["rows"][key]["test"]["balanced_accuracy"]))
        assert c["ci_pt"][0] <= c["change_pt"] <= c["ci_pt"][1]
    assert "SSD-KD's test balanced accuracy minus each other row's" in render(results)


def test_a_row_whose_int8_files_fail_the_gate_carries_its_a16w8_export() -> None:
    results = json.loads((REPO / "models" / "zoo" / "results.json").read_text())
    for key, row in results["rows"].items():
        failed = any(row[k]["gate"] != "passed" for k in INT8_FILES)
        assert failed == ("a16w8" in row), key  # measure() exports --a16w8 exactly when int8 fails
    for row in results["rows"].values():
        row.pop("a16w8", None)
    assert "--a16w8" not in render(results)
    results["rows"]["kd"]["a16w8"] = {**results["rows"]["kd"]["int8"], "gate": "passed", "bytes": 3.9e6,
                                      "p50_ms_1thread": 61.25}
    text = render(results)
    assert "exported again with `ssdkd-export --a16w8`" in text
    assert "KD: " in text and "(passed), 3.90 MB, p50 61.2 ms on 1 thread" in text
