"""Where the tests find the offline datasets: ``../shared/data`` beside the repository."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
