"""Importing the package draws nothing: matplotlib is imported where a figure is drawn (as torchmetrics' plot does)."""

import subprocess
import sys

import pytest


@pytest.mark.slow  # a fresh interpreter imports torch and Lightning
def test_import_does_not_load_the_plotting_code():
    # torchmetrics imports matplotlib by itself when it is installed, so the check is on our own figure modules
    code = ("import sys, fp_lightning, fp_lightning.metrics, fp_lightning.functional, fp_lightning.callbacks; "
            "print(sorted(m for m in ('fp_lightning.plotting', 'fp_lightning.report') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
