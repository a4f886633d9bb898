"""Export fixtures: one full export (all targets, int8 + fp16 + a16w8, Android assets) shared by the e2e tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from export import ExportReport, Gate, export

# The tiny model is barely trained and verified on ~60 val images (one flipped image = 1.7 points): its honest
# int8 agreement is ~80%, so the e2e runs use a looser gate than the CLI default (97%, 1 pt). Broken calibration
# lands far below even this one (test_gate.py).
E2E_GATE = Gate(max_bacc_drop=10.0, min_agreement=0.7)


@pytest.fixture(scope="session")
def export_checkpoint(trained_checkpoint) -> Path:
    return Path(trained_checkpoint)


@pytest.fixture(scope="session")
def exported(export_checkpoint, tmp_path_factory) -> ExportReport:
    out = tmp_path_factory.mktemp("export_all")
    return export(export_checkpoint, targets="all", int8=True, fp16=True, a16w8=True, out_dir=out / "out",
                  android_demo=out / "android_demo", gate=E2E_GATE, val_size=None, verbose=False)
