"""A runs directory on object storage (any fsspec URL, e.g. s3://bucket/prefix): the URL
checked, its filesystem, and the two local folders that stand in for it on this machine: the
writer's spool (the run folders being trained, mirrored up by tracking.sync) and the reader's
mirror (the bucket's runs copied down by tracking.remote_read). docs/run-format.md has the
object layout."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPOOL_ENV = "CURVEWATCH_SPOOL"    # the writers' spool root
MIRROR_ENV = "CURVEWATCH_MIRROR"  # the readers' mirror root
# written into a spool root: the URL its runs sync to; a mirror root gets MIRROR_MARK, so a
# run started in a mirror stays local (hidden names: the run listing skips them)
REMOTE_MARK = ".curvewatch-remote"
MIRROR_MARK = ".curvewatch-mirror"
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ACCEPTED = "a local folder or an fsspec URL such as s3://bucket/prefix"


@dataclass(frozen=True)
class RemoteRoot:
    """A checked runs-directory URL: `protocol` and `path` (bucket/prefix, no slashes at
    either end) as fsspec takes them."""
    url: str
    protocol: str
    path: str

    def key(self, *parts: str) -> str:
        """The object key of `parts` (a run id, then a file name) under this root."""
        return "/".join((self.path, *parts))


def is_url(runs_dir: str | os.PathLike[str] | None) -> bool:
    """True when `runs_dir` is written as a URL (scheme://...), not as a local folder."""
    return isinstance(runs_dir, str) and "://" in runs_dir


def parse_url(url: str) -> RemoteRoot:
    """Check a runs-directory URL; ValueError naming it and what is accepted when it is not
    one (unknown protocol, no bucket, a path part that is not a plain name)."""
    protocol, _, rest = url.partition("://")
    import fsspec  # type: ignore[import-untyped]  # only a remote runs directory needs it
    try:
        fsspec.get_filesystem_class(protocol)
    except (ValueError, ImportError) as e:
        raise ValueError(f"runs directory {url!r}: unknown or unavailable storage protocol "
                         f"{protocol!r} ({e}); accepted: {ACCEPTED}") from None
    if protocol in ("file", "local"):
        raise ValueError(f"runs directory {url!r}: give a local folder as a plain path; "
                         f"accepted: {ACCEPTED}")
    parts = rest.strip("/").split("/")
    bad = [p for p in parts if not _SEGMENT_RE.match(p) or p in (".", "..")]
    if not rest.strip("/") or bad:
        what = f"path part {bad[0]!r} is not a plain name" if bad and bad[0] else \
            "it names no bucket"
        raise ValueError(f"runs directory {url!r}: {what}; accepted: {ACCEPTED}")
    return RemoteRoot(url=url.rstrip("/"), protocol=protocol, path="/".join(parts))


def filesystem(root: RemoteRoot) -> Any:
    """A fresh fsspec filesystem for `root`, without listing caches (a reader must see new
    objects). Credentials and endpoint come the standard way (AWS_ENDPOINT_URL, ...)."""
    import fsspec
    return fsspec.filesystem(root.protocol, skip_instance_cache=True,
                             use_listings_cache=False)


def _local_root(env: str, kind: str, root: RemoteRoot, mark_name: str) -> Path:
    base = os.environ.get(env)
    top = Path(base) if base else Path.home() / ".cache" / "curvewatch" / kind
    folder = top / root.protocol / Path(*root.path.split("/"))
    folder.mkdir(parents=True, exist_ok=True)
    mark = folder / mark_name
    if not mark.exists():
        mark.write_text(root.url + "\n", encoding="utf-8")
    return folder


def spool_dir(root: RemoteRoot) -> Path:
    """This machine's spool for `root` ($CURVEWATCH_SPOOL, else ~/.cache/curvewatch/spool,
    then protocol/bucket/prefix): the local runs directory the writers write into."""
    return _local_root(SPOOL_ENV, "spool", root, REMOTE_MARK)


def mirror_dir(root: RemoteRoot) -> Path:
    """This machine's read-through copy of `root` ($CURVEWATCH_MIRROR, else
    ~/.cache/curvewatch/mirror, then protocol/bucket/prefix)."""
    return _local_root(MIRROR_ENV, "mirror", root, MIRROR_MARK)


def remote_of(runs_dir: Path, mark: str = REMOTE_MARK) -> RemoteRoot | None:
    """The root a local spool (or, with MIRROR_MARK, a mirror) stands for; None for an
    ordinary runs directory."""
    try:
        url = (Path(runs_dir) / mark).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return parse_url(url)
    except ValueError:
        return None
