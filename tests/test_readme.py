"""The README's Python examples run as written, in order, in a scratch directory."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(_python_blocks()) >= 4


@pytest.mark.slow
def test_readme_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "[1, 4, 9, 12, 20, 28]" in printed  # the Fig. 3 worked example
    delta_f = namespace["out"]["delta_f"]  # the Metrics example on the ridge fit of MNIST
    assert delta_f[0] < 0.2 < delta_f[1:].min()  # the lowest peak is captured best
