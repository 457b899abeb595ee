"""Where the datasets live and how missing files are fetched: data folder, mirrors, MD5 checks, progress bar.

The only network access in the package happens here, and only when a dataset file is missing and the caller allows
a download. Every downloaded file is checked against its published MD5 before it is used.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DatasetDownloadError",
    "default_data_dir",
    "download_file",
    "md5sum",
    "mirror_urls",
    "resolve_data_dir",
    "safe_extract_tar",
]

_CHUNK = 1 << 16
_TIMEOUT_S = 30.0
_USER_AGENT = "fp-lightning (+https://pypi.org/project/fp-lightning/)"


class DatasetDownloadError(RuntimeError):
    """A dataset file could not be fetched (no connection, HTTP error, or a wrong MD5 from every mirror)."""


def default_data_dir() -> Path:
    """Return the data folder used when none is given: ``$FP_DATA_DIR`` if set, else ``~/.cache/fp_lightning/data``.

    Example:
        >>> from unittest import mock
        >>> with mock.patch.dict("os.environ", {"FP_DATA_DIR": "/tmp/fp-data"}):
        ...     print(default_data_dir())
        /tmp/fp-data
    """
    env = os.environ.get("FP_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "fp_lightning" / "data"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """Return ``data_dir`` as a :class:`~pathlib.Path` (``~`` expanded), or :func:`default_data_dir` when ``None``.

    Example:
        >>> resolve_data_dir("/tmp/somewhere")
        PosixPath('/tmp/somewhere')
    """
    return default_data_dir() if data_dir is None else Path(data_dir).expanduser()


def mirror_urls(official: Sequence[str], mirror: str | None = None) -> list[str]:
    """Return the base URLs to try, in order: ``mirror``, else ``$FP_DATA_MIRROR``, else the ``official`` ones.

    A mirror (argument or environment) replaces the official list entirely, so no other host is contacted. Each base
    URL ends with ``/``; a file's URL is the base URL followed by the file name.

    Example:
        >>> mirror_urls(["https://example.org/mnist/"], mirror="http://127.0.0.1:8000")
        ['http://127.0.0.1:8000/']
    """
    base = mirror if mirror else os.environ.get("FP_DATA_MIRROR")
    urls = [base] if base else list(official)
    return [u if u.endswith("/") else u + "/" for u in urls]


def md5sum(path: str | os.PathLike[str]) -> str:
    """Return the hexadecimal MD5 digest of a file, read in chunks.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"abc")
        >>> md5sum(f.name)
        '900150983cd24fb0d6963f7d28e17f72'
    """
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, part: Path, progress: bool, desc: str) -> str:
    """Stream ``url`` into ``part`` and return the MD5 of what was written."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    digest = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response, open(part, "wb") as out:
        total = response.headers.get("Content-Length")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(total) if total else None, unit="B", unit_scale=True, unit_divisor=1024, desc=desc)
        try:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    return digest.hexdigest()


def download_file(
    filename: str,
    dest_dir: str | os.PathLike[str],
    base_urls: Sequence[str],
    md5: str | None,
    *,
    progress: bool = True,
    dataset: str = "dataset",
    manual_hint: str = "",
) -> Path:
    """Download ``filename`` into ``dest_dir`` from the first base URL that serves it with the right MD5.

    The file is written to ``<name>.part`` and renamed only once its MD5 matches, so an interrupted or corrupt
    download never leaves a file that looks complete. Each base URL is tried in turn; a connection failure, an HTTP
    error or an MD5 mismatch moves on to the next one.

    Args:
        filename: the file's name, appended to each base URL and used in ``dest_dir``.
        dest_dir: folder to write into (created if needed).
        base_urls: base URLs ending with ``/``, e.g. from :func:`mirror_urls`.
        md5: expected hexadecimal MD5, or ``None`` to skip the check.
        progress: show a tqdm progress bar on stderr.
        dataset: dataset name used in error messages.
        manual_hint: extra sentence for the error message on how to place the file by hand.

    Returns:
        The path of the verified file.

    Raises:
        DatasetDownloadError: no URL gave the file with the right MD5; the message names the file, every URL tried
            and why it failed, and how to place the file by hand.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / filename
    part = dest_dir / (filename + ".part")
    failures: list[str] = []
    for base in base_urls:
        url = base + filename
        try:
            got = _fetch(url, part, progress, desc=filename)
        except (OSError, http.client.HTTPException, ValueError) as err:  # URLError, HTTPError, timeouts are OSErrors
            part.unlink(missing_ok=True)
            failures.append(f"  - {url}: {type(err).__name__}: {err}")
            continue
        if md5 is not None and got != md5.lower():
            part.unlink(missing_ok=True)
            failures.append(f"  - {url}: MD5 mismatch (expected {md5}, got {got}); the file was discarded")
            continue
        shutil.move(str(part), str(target))
        return target
    checked = f" with MD5 {md5}" if md5 else ""
    raise DatasetDownloadError(
        f"Could not download the {dataset} file {filename!r}{checked} into '{dest_dir}'. Tried:\n"
        + "\n".join(failures)
        + f"\nTo work offline, place the file by hand at '{target}'{manual_hint}, or set FP_DATA_DIR (or pass "
        "`data_dir`) to a folder that already has it, or point FP_DATA_MIRROR (or `mirror`) at a server that has it."
    )


def safe_extract_tar(archive: str | os.PathLike[str], dest_dir: str | os.PathLike[str]) -> None:
    """Extract a (gzipped) tar archive into ``dest_dir``, refusing members that would land outside it or are links."""
    dest = Path(dest_dir).resolve()
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            where = (dest / member.name).resolve()
            if not where.is_relative_to(dest) or member.issym() or member.islnk() or member.isdev():
                raise DatasetDownloadError(f"Refusing to extract {member.name!r} from '{archive}': unsafe member.")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Python without PEP 706 filters; members were checked above
            tar.extractall(dest, members=members)
