"""Numba's cache files of a generated module: checked before they load, failing soft after.

Numba keeps a module's machine code next to it (``__pycache__/<module>.*.nbi`` indexes and
``.nbc`` data, both pickles). :func:`check_numba_cache` deletes the ones that are not ours alone
or do not unpickle to what Numba expects, before any function loads them, and
:func:`guard_numba_cache` turns what can still go wrong later into warnings: a file that fails
to load is a cache miss, and a save that fails (a full disk, a file-size limit) leaves the
module running uncached in this process. The trust test of a file or directory
(:func:`_unsafe`) and :class:`CacheWarning` are shared with :mod:`symgrad.build.cache`.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import stat
import types
import warnings
from pathlib import Path

__all__ = ["CacheWarning", "check_numba_cache", "guard_numba_cache"]


class CacheWarning(UserWarning):
    """Something in the compile cache was refused, rebuilt, or the cache was moved."""


def _warn(msg: str) -> None:
    warnings.warn(f"symgrad: {msg}", CacheWarning, stacklevel=4)


def _unsafe(st: os.stat_result, kind: str = "file") -> str | None:
    """Why a stat result is not ours alone, or None."""
    regular = stat.S_ISDIR(st.st_mode) if kind == "directory" else stat.S_ISREG(st.st_mode)
    if not regular:
        return "is a symbolic link" if stat.S_ISLNK(st.st_mode) else f"is not a regular {kind}"
    if st.st_uid != os.getuid():
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def check_numba_cache(mod: types.ModuleType, stem: str) -> None:
    """Delete Numba cache files of ``mod`` that are not ours alone or do not load; without a
    safe cache directory, compile this module without Numba's cache."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    fns = [f for f in vars(mod).values()
           if isinstance(f, Dispatcher) and not isinstance(f._cache, NullCache)]
    if not fns:
        return
    d = Path(fns[0]._cache.cache_path)
    try:
        why = _unsafe(os.lstat(d), "directory")
    except OSError as exc:
        why = str(exc)
    if why:
        _warn(f"not using Numba's cache directory {d} for {stem}: it {why}")
        for f in fns:
            f._cache = NullCache()
        return
    refused: list[str] = []
    files = {e.name: e for e in os.scandir(d) if e.name.startswith(stem + ".")
             and e.name.endswith((".nbi", ".nbc"))}
    for e in list(files.values()):
        why = _unsafe(e.stat(follow_symlinks=False))
        if why:
            refused.append(f"{e.name} ({why})")
            _remove(e.path)
            del files[e.name]
    for e in [e for e in files.values() if e.name.endswith(".nbi")]:
        why = _check_index(Path(e.path), set(files))
        if why:
            refused.append(f"{e.name} ({why})")
            base = e.name[:-len(".nbi")]
            for n in [e.name, *(n for n in files if n.startswith(base + "."))]:
                _remove(os.path.join(d, n))
    if refused:
        _warn(f"deleted Numba cache files in {d} that could not be trusted, so Numba "
              f"recompiles: {', '.join(refused)}")
    guard_numba_cache(fns, stem)


def guard_numba_cache(fns, stem: str) -> None:
    """Make the Numba cache of the dispatchers ``fns`` (one module's) fail soft: a file that
    does not load is a cache miss, and a save that fails (a full disk, a file-size limit) runs
    the module uncached from then on; each with a warning, never an error from a call."""
    from numba.core.caching import NullCache

    for f in fns:
        _tolerate_load_errors(f._cache, stem)
        _tolerate_save_errors(f._cache, fns, stem, NullCache)


def _tolerate_save_errors(cache, fns, stem: str, null) -> None:
    save = cache.save_overload

    def save_overload(sig, data):
        try:
            save(sig, data)
        except OSError as exc:
            for f in fns:  # compiled in memory already; no further saves of this module
                f._cache = null()
            _warn(f"could not save Numba's compiled code for {stem} ({exc.strerror or exc}); "
                  "it runs uncached in this process (compiled again in the next one)")

    cache.save_overload = save_overload


def _tolerate_load_errors(cache, stem: str) -> None:
    """A cache file that fails to load (truncated or replaced after the check above, by a
    concurrent writer that was killed) is a cache miss with a warning: Numba compiles again
    and rewrites it, instead of raising from the first call."""
    load = cache.load_overload

    def load_overload(sig, target_context):
        try:
            return load(sig, target_context)
        except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError,
                AttributeError, ImportError, IndexError, KeyError) as exc:
            _warn(f"Numba's cached code for {stem} did not load ({type(exc).__name__}: {exc}); "
                  "compiled it again")
            return None

    cache.load_overload = load_overload


def _check_index(path: Path, present: set[str]) -> str | None:
    """Why Numba could not load this index or a data file it names (None: it loads)."""
    import numba

    try:
        with open(path, "rb") as f:
            version = pickle.load(f)
            rest = f.read()
        if version != numba.__version__:
            return None  # Numba ignores an index of another version
        _stamp, overloads = pickle.loads(rest)
        if not isinstance(overloads, dict):
            return "not a Numba index"
        for name in overloads.values():
            if not isinstance(name, str) or os.sep in name:
                return "not a Numba index"
            if name in present:
                with open(path.parent / name, "rb") as f:
                    if not isinstance(pickle.loads(f.read()), tuple):
                        return f"{name} is not Numba data"
    except Exception as exc:  # truncated or garbage pickles
        return f"corrupted: {type(exc).__name__}: {exc}"
    return None


def _remove(p: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(p)
