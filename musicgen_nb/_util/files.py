"""One way to write files: complete and durable, never half-written, never over a file we did not write.

:func:`write_temp` writes a hidden temporary file beside the target; :func:`claim`
gives it its final name only if that name is free (atomically, so two processes can
never take one name); :func:`replace` moves it over a file of ours. :func:`write_atomic`
does the three in one call. A full disk raises an ``OSError`` that says so and names the
file, and leaves no temporary file behind.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_atomic(d / "a.txt", "hello").read_text()
'hello'
>>> try:
...     write_atomic(d / "a.txt", "again")
... except FileExistsError:
...     print("kept:", (d / "a.txt").read_text())
kept: hello
>>> slug("Lo-fi beat, 90 BPM!")
'lo-fi-beat-90-bpm'
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .checks import check_path

if TYPE_CHECKING:
    from collections.abc import Sequence

# Errors of os.link that mean "no hard links here" (network and FUSE mounts), not "failed".
_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS)


def disk_error(err: OSError, path) -> OSError:
    """An OSError that names ``path`` and, for a full disk or quota, says so plainly.

    Examples
    --------
    >>> str(disk_error(OSError(errno.ENOSPC, "No space left on device"), "/x/a.wav"))
    'no space left on device writing /x/a.wav'
    """
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on device" if err.errno == errno.ENOSPC else "disk quota exceeded"
        new = OSError(f"{what} writing {path}")
    else:
        new = type(err)(f"could not write {path}: {err.strerror or err}")
    new.errno = err.errno  # the message stays one clean line; the code is still there
    return new


def write_temp(directory: str | os.PathLike, name: str, data: bytes) -> Path:
    """Write ``data`` to a new hidden temporary file in ``directory``, fully and durably.

    The file is created with mode ``0o666`` less the umask, like any new file, so a file
    linked from it into place has the same permissions as one written directly. On any
    failure the temporary file is removed and the error names ``directory / name``.

    Returns
    -------
    Path
        The temporary file (``.{name}.XXXXXXXX.tmp``); the caller moves or removes it.

    Examples
    --------
    >>> import tempfile
    >>> tmp = write_temp(tempfile.mkdtemp(), "a.bin", b"abc")
    >>> tmp.name.startswith(".a.bin."), tmp.read_bytes()
    (True, b'abc')
    """
    directory = Path(directory)
    while True:
        tmp = directory / f".{name}.{os.urandom(4).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as err:
            raise disk_error(err, directory / name) from err
    try:
        with os.fdopen(fd, "wb") as f:
            view = memoryview(data)
            while view:
                view = view[f.write(view) :]
            f.flush()
            os.fsync(f.fileno())
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise disk_error(err, directory / name) from err
        raise
    return tmp


def claim(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Give the complete file ``src`` the new name ``dst``; raise FileExistsError if taken.

    A hard link fails atomically when ``dst`` exists, so two processes can never
    claim one name. Where hard links are not supported (some network and FUSE
    mounts), ``dst`` is claimed with ``O_EXCL`` and ``src`` renamed over it.
    ``src`` is left in place when linked: the caller removes it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> claim(write_temp(d, "b", b"1"), d / "b")
    >>> (d / "b").read_bytes()
    b'1'
    """
    try:
        os.link(src, dst)
        return
    except FileExistsError:
        raise
    except OSError as err:
        if err.errno not in _NO_LINKS:
            raise disk_error(err, dst) from err
    os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    os.replace(src, dst)


def write_atomic(path, data, *, overwrite: bool = False) -> Path:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically.

    Without ``overwrite``, an existing ``path`` raises FileExistsError and is left as it
    is (also when another process creates it meanwhile). With it, ``path`` is replaced
    in one step: a reader sees the old file or the new one, never a mix.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.json"
    >>> write_atomic(p, "{}").read_text(), write_atomic(p, "[]", overwrite=True).read_text()
    ('{}', '[]')
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True or choose another name")
    tmp = write_temp(path.parent, path.name, data)
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            claim(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_dir(tmp, final) -> None:
    """Move the complete folder ``tmp`` to ``final``, replacing an older ``final`` of ours.

    The old folder is first renamed aside and removed only once the new one is in
    place, so a kill at any moment leaves either the old folder or the new one.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "t").mkdir(); (d / "t" / "x").write_text("new")
    3
    >>> replace_dir(d / "t", d / "ckpt"); (d / "ckpt" / "x").read_text()
    'new'
    """
    tmp, final = Path(tmp), Path(final)
    fsync_dir(tmp)  # its entries are durable before it takes the final name
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)  # and so is the rename
    shutil.rmtree(old, ignore_errors=True)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush the entries of the folder ``path`` (new, renamed files) to disk.

    Examples
    --------
    >>> import tempfile
    >>> fsync_dir(tempfile.mkdtemp())
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:  # some file systems cannot sync a folder: nothing more to do there
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` runs on this machine (one of another user counts).

    Examples
    --------
    >>> pid_alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: str | os.PathLike, prefix: str) -> list[Path]:
    """Remove the folders ``{prefix}{pid}`` in ``folder`` whose process is gone; return them.

    A temporary folder of a live process (this one or another) is kept: that
    process may be writing it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / f".t{os.getpid()}").mkdir(); (d / ".t999999999").mkdir()
    >>> [p.name for p in remove_stale(d, ".t")], sorted(p.name for p in d.iterdir()) == [f".t{os.getpid()}"]
    (['.t999999999'], True)
    """
    gone = []
    for p in Path(folder).glob(f"{prefix}*"):
        pid = p.name[len(prefix) :]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    return gone


def unique_path(path: str | os.PathLike, *, companions: Sequence[str] = ()) -> Path:
    """Return ``path`` if it is free, else ``name-1.ext``, ``name-2.ext``, ... whichever is free.

    Parameters
    ----------
    path : str or Path
    companions : sequence of str, keyword-only
        Suffixes of files that go with the chosen one (for example ``(".json",)`` for a
        sidecar): a name counts as free only when those are free too.

    A name that is free now may be taken before you write it: to claim one safely
    under concurrency, create it with :func:`claim` and retry on FileExistsError.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "a.wav").touch()
    >>> unique_path(d / "a.wav").name
    'a-1.wav'
    """
    path = check_path(path, "path")
    stem, suffix = path.stem, path.suffix

    def free(p: Path) -> bool:
        return not p.exists() and not any(p.with_suffix(c).exists() for c in companions)

    if free(path):
        return path
    i = 1
    while not free(candidate := path.with_name(f"{stem}-{i}{suffix}")):
        i += 1
    return candidate


def slug(text: str | None, limit: int = 40) -> str:
    """A file-name-safe lowercase form of a prompt: letters and digits joined by ``-``.

    Examples
    --------
    >>> slug(None), slug("!!!"), slug("Jazz  Trio", limit=4), slug("Jazz  Trio", limit=5)
    ('unconditional', 'prompt', 'jazz', 'jazz-')
    """
    if not text:
        return "unconditional"
    keep = "".join(c if c.isalnum() else "-" for c in str(text).lower()).strip("-")
    while "--" in keep:
        keep = keep.replace("--", "-")
    return keep[:limit] or "prompt"  # cut as 0.2 did: saved file names stay the same


def sha256_file(path, *, chunk: int = 1 << 20) -> str:
    """The SHA-256 hex digest of a file, read in chunks.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "e"; _ = p.write_bytes(b"")
    >>> sha256_file(p)[:12]
    'e3b0c44298fc'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
