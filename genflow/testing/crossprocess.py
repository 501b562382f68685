"""Cross-process replay: every checkpoint's data replayed in fresh interpreters that differ.

An instance is resumed by whatever process picks it up: another worker, on
another machine, after a deploy. What the sandbox cannot see in one process
shows there: the iteration order of sets of strings (it follows
`PYTHONHASHSEED`, random per process), the local time zone (`TZ`), the
environment. So the checker can start fresh interpreters, each with another
hash seed, the time zone `<+1245>-12:45` (or `<-0330>3:30`, whichever is not
the local one) and an environment stripped to what Python needs to start,
have them import the workflow's module, load every distinct blob the run
saved and walk the definition on it, and compare the shapes with this
process's (`check_replay(..., cross_process=True)`; on in the pytest plugin's
thorough mode). On a difference, more interpreters, each changing one thing,
say which one matters.

The interpreters are kept and reused by later checks (one startup per
variation and test session); they only load blobs and walk definitions:
no step or handler runs there. The workflow must be importable by its module
name (a class defined inside a function or in ``__main__`` is not).

The child side is this module run as a program: it reads requests (msgpack
frames on stdin) and answers with the shapes.
"""

from __future__ import annotations

import atexit
import importlib
import os
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

import msgpack

from genflow.codec import loads
from genflow.errors import GenflowError
from genflow.testing.compare import data_key
from genflow.testing.determinism import Node, Shape, ShapeProblem, canonical, compare_shapes, shape
from genflow.testing.problems import shape_problem
from genflow.testing.report import Problem
from genflow.testing.run import Run

__all__ = ["CrossProcessError", "Variation", "replay_elsewhere", "shapes_elsewhere"]

#: what a child keeps of this process's environment: what Python needs to start
_KEPT = ("PATH", "HOME", "SYSTEMROOT", "TMPDIR", "TEMP", "TMP", "VIRTUAL_ENV",
         "LD_LIBRARY_PATH", "PYTHONNOUSERSITE", "LANG")
_ZONES = ("<+1245>-12:45", "<-0330>3:30")
_SEEDS = (1201, 3407, 8803, 5501)


class CrossProcessError(GenflowError):
    """The cross-process check cannot run (the workflow's module cannot be imported...)."""


Variation = tuple[tuple[str, str], ...]  # the child's environment, as sorted pairs


def _variation(seed: int, *, zone: bool = True, strip: bool = True, hash_seed: bool = True
               ) -> Variation:
    """A child's environment: another hash seed, time zone and environment, or
    (to tell which matters) only some of them."""
    env = {k: os.environ[k] for k in _KEPT if k in os.environ} if strip else dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    if strip:
        env["GENFLOW_REPLAY_PROCESS"] = "another process"
    if hash_seed:
        mine = os.environ.get("PYTHONHASHSEED")
        env["PYTHONHASHSEED"] = str(seed if str(seed) != mine else seed + 1)
    elif "PYTHONHASHSEED" in os.environ:
        env["PYTHONHASHSEED"] = os.environ["PYTHONHASHSEED"]
    if zone:
        env["TZ"] = _other_zone()
    elif "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    return tuple(sorted(env.items()))


def _other_zone() -> str:
    offset = time.localtime().tm_gmtoff
    return _ZONES[0] if offset != 12 * 3600 + 45 * 60 else _ZONES[1]


def _describe(variation: Variation) -> str:
    env = dict(variation)
    parts = []
    if "PYTHONHASHSEED" in env and env["PYTHONHASHSEED"] != os.environ.get("PYTHONHASHSEED"):
        parts.append(f"PYTHONHASHSEED={env['PYTHONHASHSEED']}")
    if env.get("TZ") != os.environ.get("TZ"):
        parts.append(f"TZ={env.get('TZ')}")
    if "GENFLOW_REPLAY_PROCESS" in env:
        parts.append("an environment stripped to " + ", ".join(
            k for k in _KEPT if k in env) + " and PYTHONPATH")
    return "; ".join(parts) or "this process's settings"


# -- children ---------------------------------------------------------------------------------


class _Child:
    """One fresh interpreter that walks definitions on blobs, on request."""

    def __init__(self, variation: Variation):
        self.variation = variation
        self.process = subprocess.Popen(
            [sys.executable, "-m", "genflow.testing.crossprocess"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(variation))

    def ask(self, request: Mapping[str, Any]) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            _write(self.process.stdin, request)
            return _read(self.process.stdout)
        except (BrokenPipeError, EOFError, struct.error) as exc:
            error = b""
            if self.process.stderr is not None:
                self.process.kill()
                error = self.process.stderr.read()
            raise CrossProcessError(
                "the interpreter started for the cross-process check stopped: "
                f"{error.decode(errors='replace')[-2000:] or exc!r}") from exc

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # type: ignore[union-attr]
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


_CHILDREN: dict[Variation, _Child] = {}


def _child(variation: Variation) -> _Child:
    child = _CHILDREN.get(variation)
    if child is None or child.process.poll() is not None:
        child = _CHILDREN[variation] = _Child(variation)
    return child


@atexit.register
def _close_children() -> None:
    for child in _CHILDREN.values():
        child.close()
    _CHILDREN.clear()


def shapes_elsewhere(cls: type, blobs: list[bytes], variation: Variation) -> list[Any]:
    """The canonical shapes of `cls`'s definition on each blob's data, walked in a
    child with `variation` as its environment."""
    module = cls.__module__
    if module == "__main__" or "<locals>" in cls.__qualname__:
        raise CrossProcessError(
            f"the cross-process check imports the workflow in another interpreter, but "
            f"{cls.__qualname__} (in {module}) cannot be imported there: define it at the top "
            "level of an importable module")
    answer = _child(variation).ask({"module": module, "blobs": blobs})
    if answer.get("error"):
        raise CrossProcessError(f"the cross-process check could not import {module!r} in "
                                f"another interpreter: {answer['error']}")
    return list(answer["shapes"])


# -- the check ------------------------------------------------------------------------------


def replay_elsewhere(plain: Run, processes: int) -> tuple[Problem | None, int]:
    """Walk the definition on every distinct data `plain` saved, here and in
    `processes` children; the first difference as a `Problem`, and how many
    children were used."""
    cls = plain.scenario.workflow
    marks, seen = [], set()
    for mark in plain.trace:
        if not mark.durable:
            continue
        key = data_key(loads(mark.blob)[0])
        if key not in seen:
            seen.add(key)
            marks.append(mark)
    blobs = [m.blob for m in marks]
    mine = [canonical(shape(loads(blob)[0])) for blob in blobs]
    used = 0
    for number in range(processes):
        variation = _variation(_SEEDS[number % len(_SEEDS)] + number // len(_SEEDS))
        used += 1
        theirs = shapes_elsewhere(cls, blobs, variation)
        for mark, here, there in zip(marks, mine, theirs, strict=True):
            if here != there:
                cause = _cause(cls, mark.blob, here)
                diff = _difference(here, there)
                found = ShapeProblem("process", diff, cause or _describe(variation))
                return shape_problem(found, mark, plain.scenario), used
    return None, used


def _cause(cls: type, blob: bytes, here: Any) -> str:
    """Which difference between the processes changes the shape: children that
    differ in one thing each, all with the same hash seed."""
    seed = _SEEDS[0]
    same = _variation(seed, zone=False, strip=False)
    reference = shapes_elsewhere(cls, [blob], same)[0]
    found = []
    if shapes_elsewhere(cls, [blob], _variation(seed, zone=True, strip=False))[0] != reference:
        found.append(f"the time zone (TZ={_other_zone()})")
    if shapes_elsewhere(cls, [blob], _variation(seed, zone=False, strip=True))[0] != reference:
        found.append("the environment (variables this process has and the other not)")
    if reference != here or shapes_elsewhere(
            cls, [blob], _variation(seed + 1, zone=False, strip=False))[0] != reference:
        found.append("PYTHONHASHSEED (the iteration order of a set of strings)")
    return "it depends on " + " and ".join(found) if found else ""


def _difference(here: Any, there: Any) -> str:
    return compare_shapes(_shape(here), _shape(there), ("here", "in the other process")
                          ) or "the shapes differ"


def _shape(found: Any) -> Shape:
    """A canonical shape (from `determinism.canonical`) back as a `Shape`."""
    nodes, error = [], ""
    for node in found:
        if node and node[0] == "error":
            error = node[1]
        else:
            depth, kind, name, detail = node
            nodes.append(Node(depth, kind, name, _tuples(detail)))
    return Shape(tuple(nodes), error)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


# -- the child's side -------------------------------------------------------------------------


def _write(stream: IO[bytes], value: Any) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    head = stream.read(4)
    if len(head) < 4:
        raise EOFError("no answer")
    (size,) = struct.unpack(">I", head)
    return msgpack.unpackb(stream.read(size), raw=False)


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """Answer requests until stdin closes: import a module, walk blobs' definitions."""
    while True:
        try:
            request = _read(requests)
        except EOFError:
            return
        try:
            importlib.import_module(request["module"])
        except Exception as exc:
            _write(answers, {"error": f"{type(exc).__name__}: {exc}"})
            continue
        found = []
        for blob in request["blobs"]:
            try:
                found.append(canonical(shape(loads(blob)[0])))
            except Exception as exc:
                found.append([["error", f"{type(exc).__name__}: {exc}"]])
        _write(answers, {"shapes": found})


if __name__ == "__main__":  # the child: python -m genflow.testing.crossprocess
    _answers = sys.stdout.buffer
    sys.stdout = sys.stderr  # what the user's module prints must not mix with the answers
    serve(sys.stdin.buffer, _answers)
