"""The README's and the docs' Python examples run as written, in order, in a scratch directory."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Pages whose examples run, in this order, in one namespace (later pages use what the README made).
PAGES = [REPO / "README.md", REPO / "docs" / "monitor.md", REPO / "docs" / "library.md",
         REPO / "docs" / "early_stopping.md", REPO / "docs" / "theory.md"]


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_every_page_has_examples():
    assert all(_python_blocks(page) for page in PAGES)


@pytest.mark.slow
def test_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for page in PAGES:
        for block in _python_blocks(page):
            exec(compile(block, str(page), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "[1, 4, 9, 12, 20, 28]" in printed  # the Fig. 3 worked example
    delta_f = namespace["out"]["delta_f"]  # the Metrics example on the ridge fit of MNIST
    assert delta_f[0] < 0.2 < delta_f[1:].min()  # the lowest peak is captured best
    assert namespace["monitor"].output_key == "logits"
    assert namespace["ratios"].tolist() == [0.0]  # the theory page: nothing changed above η = 2
