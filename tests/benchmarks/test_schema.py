"""The results.json validator catches schema and rigor violations."""

from __future__ import annotations

import copy

import pytest

from benchmarks import schema


def _broken(doc: dict, edit) -> list[str]:
    d = copy.deepcopy(doc)
    edit(d)
    return schema.validate(d)


def test_valid_document(host_results):
    assert schema.validate(host_results.doc) == []
    schema.check(host_results.doc)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["rows"][0].pop("latency"), "rows[0].latency: missing"),
    (lambda d: d["rows"][0].update(latency=None), "status ok but no latency"),
    (lambda d: d["rows"][0]["latency"].update(n=3), "3 runs < requested 20"),
    (lambda d: d["rows"][0].update(status="failed: x"), "status failed but latency figures reported"),
    (lambda d: d["rows"][0].update(status="meh"), "does not start with one of"),
    (lambda d: d.update(schema_version=99), "is not 'ssdkd-bench-results' v1"),
    (lambda d: d["machine"].pop("load_average_end"), "machine.load_average_end: missing"),
    (lambda d: d["rows"][0].update(estimate={"label": "x", "factor": 2, "basis": "b", "p50_ms": 1, "p90_ms": 1,
                                             "mean_ms": 1}), "must say 'estimate'"),
    (lambda d: d["failures"].append("torch: x"), "1 listed but 0 rows failed"),
])
def test_violations_are_reported(host_results, edit, message):
    problems = _broken(host_results.doc, edit)
    assert any(message in p for p in problems), problems
    with pytest.raises(ValueError, match="invalid results.json"):
        schema.check({**host_results.doc, "rows": "nope"})
