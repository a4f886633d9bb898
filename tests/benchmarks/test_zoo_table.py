"""The README's zoo table is generated from the committed run outputs, not typed by hand."""

from __future__ import annotations

import json

from benchmarks.zoo_table import BEGIN, END, REPO, render


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
