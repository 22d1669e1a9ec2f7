"""Debian packages: presence, version, files and the licence of a packaged file."""

from __future__ import annotations

import fnmatch
import functools
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

from lyra_core.errors import LyraError


def _dpkg_query(package: str) -> str | None:
    """The installed version of `package`, or None."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", package],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as e:
        raise LyraError("`lyra data corpus` needs Debian's dpkg-query (a Debian system)") from e
    words = out.stdout.split()
    return words[-1] if out.returncode == 0 and len(words) >= 2 and words[0] == "ii" else None


@functools.cache
def package_version(package: str) -> str | None:
    return _dpkg_query(package)


@functools.cache
def package_files(package: str) -> tuple[str, ...]:
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
    return tuple(line for line in out.stdout.splitlines() if Path(line).is_file())


def copyright_path(package: str) -> Path:
    return Path("/usr/share/doc") / package / "copyright"


def _dep5_paragraphs(text: str) -> list[tuple[list[str], str]]:
    """(Files patterns, short licence name) of each DEP-5 paragraph that has both."""
    found = []
    for para in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", para, re.M)
        lic = re.search(r"^License:[ \t]*(\S.*)$", para, re.M)
        if files and lic:
            found.append((files.group(1).split(), lic.group(1).strip()))
    return found


_LICENCE_WORDS = (
    (r"\bMIT license\b", "MIT"),
    (r"General Public License.{0,120}?version 3.{0,60}?later", "GPL-3+"),
    (r"General Public License.{0,120}?version 2.{0,60}?later", "GPL-2+"),
    (r"common-licenses/GPL-3", "GPL-3"),
    (r"common-licenses/GPL-2", "GPL-2"),
)


def _licence_from_prose(text: str) -> str | None:
    for pattern, name in _LICENCE_WORDS:
        if re.search(pattern, text, re.S | re.I):
            return name
    return None


@functools.cache
def _copyright_text(package: str) -> str:
    try:
        return copyright_path(package).read_text(errors="replace")
    except OSError:
        return ""


def licence_of(package: str, path: str | None = None) -> str:
    """The licence of `path` in `package`, from /usr/share/doc/PKG/copyright.

    DEP-5 files: the last paragraph (not debian/*) whose Files pattern matches the end of
    `path` (the installed path, whose tail is the upstream path), else the `Files: *` one.
    Other files: the licence their prose names. "unknown (see FILE)" when neither says.
    """
    text = _copyright_text(package)
    match = None
    for patterns, lic in _dep5_paragraphs(text):
        if any(p.startswith("debian/") for p in patterns):
            continue
        if "*" in patterns and match is None:
            match = lic
        if path and any(p != "*" and fnmatch.fnmatch(path, "*/" + p) for p in patterns):
            match = lic
    return match or _licence_from_prose(text) or f"unknown (see {copyright_path(package)})"


def install_command(packages: Iterable[str]) -> str:
    return "apt-get install -y " + " ".join(dict.fromkeys(packages))
