"""The determinism sandbox: what `definition()` reads besides the data, caught where it reads it.

genflow replays `definition()` on the saved data at every move, in whatever
process resumes the instance, days later. So the definition, and everything
it calls, in any module, must not read the clock, roll dice, make ids, look at
the environment, or touch files and the network: an instance resumed
elsewhere would take another path. The checker walks the definition (every
branch, with `genflow.replay.iter_tree`) on every distinct data a scenario
reaches, inside a `Sandbox`, which records each such read with the call, the
file and line that made it, and the statement being built when it happened.

How it sees them, whatever name they were imported under:

* `sys.setprofile` while the walk runs: a call of a known C function
  (`time.time`, `time.localtime`, `datetime.now/utcnow/today` on any date or
  datetime class, `os.urandom`, a method of `random`'s shared generator...) or
  of a known Python function (`uuid.uuid4`, `os.getenv`, `os.environ`'s
  `__getitem__` and `__iter__`, `secrets`, an unseeded `random.Random()`);
  functions whose result depends on their arguments only when they have some
  (`time.gmtime(ts)`, `time.strftime(fmt, tuple)`) count only when called
  without them, which the calling instruction says;
* an audit hook (`sys.addaudithook`, installed once, idle outside a walk):
  `open`, directory listings, sockets, DNS, subprocesses.

The walk runs only in checks, never in an engine, so ordinary runs pay
nothing. Iteration over sets of strings (whose order depends on
`PYTHONHASHSEED`) is checked by consequence, in `genflow.testing.determinism`.

A call is the user's when the first frame above the library doing it belongs
to neither the library nor genflow; a call made on behalf of `logging` or
`warnings`, or by the import system, is not counted. To allow one on purpose,
end its line with ``# genflow: allow`` (or ``# genflow: allow[clock]``, a comma-
separated list of categories), or pass ``allow=[...]`` to the check:
categories, dotted call names (``"os.environ"``), or modules whose calls are
allowed (``"myapp.flags"``).
"""

from __future__ import annotations

import datetime as _dt
import dis
import linecache
import os
import random
import re
import secrets
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import attrs

__all__ = ["CATEGORIES", "Sandbox", "Violation", "allowed_on_line"]

#: what the sandbox refuses, by category: what a report says it reads
CATEGORIES = {
    "clock": "the clock",
    "random": "randomness",
    "uuid": "a fresh uuid",
    "environment": "the environment (os.environ)",
    "secrets": "the secrets module",
    "files": "files",
    "network": "the network",
    "processes": "other processes",
}

_ANY_ARGS = 1 << 30


@attrs.frozen
class Violation:
    """One read `definition()` may not make."""

    category: str  # a key of CATEGORIES
    call: str  # "datetime.datetime.now()", "os.environ", "open('config.toml')"
    file: str
    line: int
    function: str
    #: the statement built right after the read ("If 'lunch special?'"), "" at the end
    statement: str = ""

    @property
    def where(self) -> str:
        return f"{_shown_path(self.file)}:{self.line}"

    @property
    def code(self) -> str:
        return linecache.getline(self.file, self.line).strip()

    def words(self) -> str:
        code = self.code
        text = f"{self.call} at {self.where} (in {self.function})"
        return f"{text}: {code}" if code else text


# -- what is guarded ------------------------------------------------------------------------

def _c_guards() -> dict[int, tuple[str, str, int]]:
    """C functions, by id: (category, name, most arguments that still read the outside)."""
    table: dict[int, tuple[str, str, int]] = {}

    def add(fn: Any, category: str, name: str, max_args: int = _ANY_ARGS) -> None:
        if fn is not None:
            table[id(fn)] = (category, name, max_args)

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter",
                 "perf_counter_ns", "process_time", "process_time_ns", "thread_time",
                 "thread_time_ns", "clock_gettime", "clock_gettime_ns", "localtime", "mktime",
                 "ctime"):  # localtime, mktime, ctime: local time, the TZ, even with arguments
        add(getattr(time, name, None), "clock", f"time.{name}()")
    add(time.gmtime, "clock", "time.gmtime()", 0)
    add(time.asctime, "clock", "time.asctime()", 0)
    add(time.strftime, "clock", "time.strftime()", 1)
    # a file's metadata is a read of the file system too (`os.path.exists`,
    # `Path.is_file()` and `getsize` call these): another machine, another answer
    for name in ("stat", "lstat", "access"):
        add(getattr(os, name, None), "files", f"os.{name}()")
    add(os.urandom, "random", "os.urandom()")
    add(getattr(os, "getrandom", None), "random", "os.getrandom()")
    return table


def _py_guards() -> dict[types.CodeType, tuple[str, str]]:
    """Python functions, by code object: (category, name)."""
    table: dict[types.CodeType, tuple[str, str]] = {}

    def add(fn: Any, category: str, name: str) -> None:
        code = getattr(fn, "__code__", None)
        if code is not None:
            table[code] = (category, name)

    add(uuid.uuid1, "uuid", "uuid.uuid1()")
    add(uuid.uuid4, "uuid", "uuid.uuid4()")
    add(os.getenv, "environment", "os.getenv()")
    add(getattr(os, "getenvb", None), "environment", "os.getenvb()")
    for method in ("__getitem__", "__iter__", "__len__"):  # os.environ and os.environb
        add(getattr(type(os.environ), method, None), "environment", "os.environ")
    for name, value in vars(secrets).items():
        if isinstance(value, types.FunctionType) and value.__module__ == "secrets":
            add(value, "secrets", f"secrets.{name}()")
    add(random.Random.seed, "random", "random.Random() without a seed")
    return table


_C_GUARDS = _c_guards()
_PY_GUARDS = _py_guards()
_SEED_CODE = random.Random.seed.__code__
_DATE_READS = {"now", "utcnow", "today"}
_SHARED_RANDOM = getattr(random, "_inst", None)

_AUDITS = {
    "open": "files", "os.listdir": "files", "os.scandir": "files", "glob.glob": "files",
    "glob.glob/2": "files", "os.walk": "files", "shutil.copyfile": "files",
    "shutil.rmtree": "files", "shutil.move": "files", "tempfile.mkstemp": "files",
    "tempfile.mkdtemp": "files", "os.remove": "files", "os.rename": "files",
    "os.mkdir": "files", "sqlite3.connect": "files",
    "urllib.Request": "network", "http.client.connect": "network", "ftplib.connect": "network",
    "smtplib.connect": "network", "poplib.connect": "network", "imaplib.open": "network",
    "subprocess.Popen": "processes", "os.system": "processes", "os.posix_spawn": "processes",
    "os.exec": "processes", "os.spawn": "processes", "os.fork": "processes",
    "os.startfile": "processes",
}

#: modules whose frames are the guarded call's own machinery (skipped to find the caller)
_MACHINERY = frozenset({
    "time", "datetime", "_datetime", "_pydatetime", "random", "uuid", "os", "posixpath",
    "ntpath", "genericpath", "secrets", "socket", "io", "_pyio", "pathlib", "glob",
    "shutil", "tempfile", "subprocess", "codecs", "_collections_abc", "collections",
    "encodings", "fnmatch", "stat", "http", "urllib", "email", "ssl", "selectors",
})
#: modules on whose behalf a guarded call is fine: logging stamps records with the
#: time, the import system reads files, warnings and linecache read sources
_ON_BEHALF = ("logging", "warnings", "linecache", "traceback", "tokenize", "importlib",
              "zipimport", "pkgutil", "inspect", "_frozen_importlib",
              "_frozen_importlib_external", "codeop", "site", "sysconfig", "unittest.mock")
_BOUNDARY = ("genflow.", "hypothesis", "_pytest", "pytest", "pluggy")
_PRAGMA = re.compile(r"#\s*genflow:\s*allow(?:\[([^\]]*)\])?")


def allowed_on_line(file: str, line: int, category: str) -> bool:
    """Whether the source line ends with a ``# genflow: allow`` pragma that
    covers `category` (no list: every category)."""
    found = _PRAGMA.search(linecache.getline(file, line))
    if found is None:
        return False
    names = found.group(1)
    return names is None or category in {n.strip() for n in names.split(",")}


# -- the sandbox ----------------------------------------------------------------------------


class Sandbox:
    """Records, while active (`with Sandbox(allow) as box:`), every read in `CATEGORIES`
    made by code of the current thread; `box.violations` lists them once each.

    The calls are not refused while the walk runs (a definition that raised
    would hide its next problem); the check reports them, attributed to the
    statement built next (`tag`)."""

    def __init__(self, allow: Iterable[str] = ()):
        self.allow = tuple(allow)
        self.violations: list[Violation] = []
        #: the global namespaces of user code that ran inside the sandbox
        self.namespaces: dict[int, dict[str, Any]] = {}
        self._seen: set[tuple[str, int]] = set()
        self._spaces: set[int] = set()  # namespaces looked at already
        self._thread = threading.get_ident()
        self._busy = False
        self._previous: Any = None

    # -- activation --

    def __enter__(self) -> Sandbox:
        global _ACTIVE
        _install_audit_hook()
        self._previous = sys.getprofile()
        _ACTIVE = self
        sys.setprofile(self._profiler())
        return self

    def __exit__(self, *exc: Any) -> None:
        global _ACTIVE
        sys.setprofile(self._previous)
        _ACTIVE = None

    def tag(self, statement: str) -> None:
        """Attribute the reads not yet attributed to `statement` (built right after them)."""
        for index, found in enumerate(self.violations):
            if not found.statement:
                self.violations[index] = attrs.evolve(found, statement=statement)

    # -- hooks --

    def _profiler(self) -> Callable[[Any, str, Any], None]:
        """The profile function: called for every call and return while the walk
        runs, so it is a closure over locals and returns at once for what is
        not guarded (most events)."""
        c_guards, py_guards, found = _C_GUARDS, _PY_GUARDS, self._found
        spaces, namespaces = self._spaces, self.namespaces
        module_type, shared, system = types.ModuleType, _SHARED_RANDOM, random.SystemRandom
        date, date_reads, seed_code = _dt.date, _DATE_READS, _SEED_CODE
        last = [None]  # the globals of the last call seen (consecutive calls share them)

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event == "c_call":
                guard = c_guards.get(id(arg))
                if guard is not None:
                    if guard[2] == _ANY_ARGS or _argument_count(frame) <= guard[2]:
                        found(guard[0], guard[1], frame)
                    return
                owner = getattr(arg, "__self__", None)
                kind = type(owner)
                if kind is module_type or owner is None:
                    return
                if kind is type:
                    if arg.__name__ in date_reads and issubclass(owner, date):
                        found("clock", f"{owner.__module__}.{owner.__qualname__}."
                                       f"{arg.__name__}()", frame)
                elif owner is shared or kind is system:
                    shown = "random" if owner is shared else "random.SystemRandom()"
                    found("random", f"{shown}.{arg.__name__}()", frame, by_entry=True)
            elif event == "call":
                code = frame.f_code
                reads = py_guards.get(code)
                if reads is not None:
                    if code is seed_code and frame.f_locals.get("a") is not None:
                        return  # random.Random(seed): a generator of your own, seeded
                    found(reads[0], reads[1], frame.f_back)
                    return
                space = frame.f_globals
                if space is last[0]:
                    return
                last[0] = space
                if id(space) not in spaces:
                    spaces.add(id(space))
                    if not _is_library(space):
                        namespaces[id(space)] = space

        return profile

    def audit(self, category: str, event: str, args: tuple[Any, ...], frame: Any) -> None:
        name = f"{event}({_short(args[0])})" if args and event == "open" else event
        self._found(category, name, frame)

    def _found(self, category: str, name: str, frame: Any, by_entry: bool = False) -> None:
        """A read of `category`; with `by_entry`, named after the library function
        the user called (random.choice rather than the getrandbits inside it)."""
        if self._busy or threading.get_ident() != self._thread:
            return
        self._busy = True
        try:
            site, entry = _user_site(frame)
            if site is None:
                return
            if entry is not None and by_entry:
                name = f"{name.partition('.')[0]}.{entry.f_code.co_name}()"
            if self._allowed(category, name, site):
                return
            code = site.f_code
            key = (code.co_filename, site.f_lineno)  # one read per line: the first
            if key in self._seen:
                return
            self._seen.add(key)
            self.violations.append(Violation(category, name, code.co_filename, site.f_lineno,
                                             code.co_qualname if hasattr(code, "co_qualname")
                                             else code.co_name))
        finally:
            self._busy = False

    def _allowed(self, category: str, name: str, site: Any) -> bool:
        module = site.f_globals.get("__name__", "")
        for entry in self.allow:
            if entry == category or name.startswith(entry) or module == entry or \
                    module.startswith(entry + "."):
                return True
        frame = site
        while frame is not None and not _is_boundary(frame):
            if allowed_on_line(frame.f_code.co_filename, frame.f_lineno, category):
                return True
            frame = frame.f_back
        return False


_ACTIVE: Sandbox | None = None
_HOOKED = False


def _install_audit_hook() -> None:
    """One audit hook for the process (they cannot be removed), idle outside a sandbox."""
    global _HOOKED
    if _HOOKED:
        return
    _HOOKED = True

    def hook(event: str, args: tuple[Any, ...]) -> None:
        box = _ACTIVE
        if box is None or box._busy:
            return
        category = _AUDITS.get(event)
        if category is None:
            if event.startswith("socket."):
                category = "network"
            elif event.startswith(("os.exec", "os.spawn")):
                category = "processes"
            else:
                return  # (sys._getframe below raises an event of its own: it ends here)
        box.audit(category, event, args, sys._getframe(1))

    sys.addaudithook(hook)


def _user_site(frame: Any) -> tuple[Any, Any]:
    """The frame that made a guarded call: the first above the guarded library's
    own frames, and the outermost of those (the function the user called).
    (None, None) when the call is made on behalf of an allowed module, or by
    genflow itself (the walk's own machinery)."""
    entry = None
    while frame is not None:
        module = frame.f_globals.get("__name__", "") or ""
        if _is_boundary(frame) or frame.f_code in _PY_GUARDS:
            return None, None  # genflow's own, or inside a guarded call already counted
        top = module.partition(".")[0]
        if top in _MACHINERY or frame.f_code.co_filename.startswith("<frozen os"):
            entry = frame
            frame = frame.f_back
            continue
        if module.startswith(_ON_BEHALF) or frame.f_code.co_filename.startswith("<frozen"):
            return None, None
        return frame, entry
    return None, None


def _is_boundary(frame: Any) -> bool:
    module = frame.f_globals.get("__name__", "") or ""
    return module.startswith(_BOUNDARY) or module == "genflow"


def _is_library(space: dict[str, Any]) -> bool:
    module = space.get("__name__", "") or ""
    top = module.partition(".")[0]
    return top in _MACHINERY or module.startswith(_ON_BEHALF) or module.startswith(
        _BOUNDARY) or top in sys.stdlib_module_names


def _argument_count(frame: Any) -> int:
    """How many arguments the instruction the frame runs passes (a CALL's
    oparg); a large number when it cannot tell (a call from C, `f(*args)`)."""
    try:
        code = frame.f_code.co_code
        index = frame.f_lasti
        name = dis.opname[code[index]]
        if name in ("CALL", "CALL_KW", "PRECALL"):
            return int(code[index + 1])
    except (IndexError, AttributeError):
        pass
    return _ANY_ARGS - 1


def _shown_path(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
