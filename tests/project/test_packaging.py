"""What the published package carries: a wheel built as pip builds it, its metadata,
and `genflow --version`."""

from __future__ import annotations

import email
import importlib.machinery
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import genflow
from genflow import cli

ROOT = Path(__file__).resolve().parents[2]
GENFLOW = Path(sys.executable).parent / "genflow"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[zipfile.ZipFile, str]:
    """The wheel `pip wheel . --no-deps` builds (an isolated build, as PyPI's would be),
    and everything the build printed."""
    out = tmp_path_factory.mktemp("wheel")
    # from a copy: setuptools reuses a checkout's build/ (a stale file would pass)
    source = tmp_path_factory.mktemp("source") / "genflow"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".*", "build", "dist", "site", "*.egg-info", "__pycache__", "*.db", "*.so"))
    # the default build, also in CI's compiled run (GENFLOW_COMPILE is the switch)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "GENFLOW_COMPILE")}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-v", "-w", str(out)],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(out.glob("genflow-*.whl"))
    assert len(wheels) == 1, wheels
    return zipfile.ZipFile(wheels[0]), done.stdout + done.stderr


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return email.message_from_bytes(wheel.read(name))


def test_the_build_prints_no_warning(built) -> None:
    _, log = built
    # the build backend's own lines (pip's index notes are about this machine, not us)
    backend = [line for line in log.splitlines() if not line.startswith("WARNING: Location")]
    warnings = [line for line in backend if re.search(r"warn", line, re.I)]
    assert warnings == [], "\n".join(warnings)


def test_the_wheel_ships_type_hints_and_the_license(built) -> None:
    wheel, _ = built
    names = wheel.namelist()
    assert "genflow/py.typed" in names  # PEP 561: mypy reads genflow's hints
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]


def test_the_default_wheel_is_the_pure_python_package(built) -> None:
    """Without GENFLOW_COMPILE=1 (docs/compiled.md) setup.py adds nothing: the wheel
    is genflow's sources and package data, for any platform."""
    wheel, _ = built
    package = {n for n in wheel.namelist() if ".dist-info/" not in n}
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "genflow").rglob("*")
               if p.is_file() and (p.suffix in (".py", ".typed") or p.parent.name == "assets")}
    assert package == sources
    assert wheel.filename.endswith("-py3-none-any.whl")


def test_the_metadata(built) -> None:
    meta = _metadata(built[0])
    assert meta["Version"] == genflow.__version__
    assert meta["License-Expression"] == "MIT"
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]
    assert "Typing :: Typed" in meta.get_all("Classifier")
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Repository", "Issues"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())


def test_the_pypi_description_works_outside_a_checkout(built) -> None:
    """PyPI shows the description to people who have no checkout: its first
    command must be one they can run (the README's first is `pip install -e .`)."""
    description = _metadata(built[0]).get_payload()
    assert isinstance(description, str) and description.startswith("# genflow")
    commands = re.findall(r"^```sh\n(.*?)^```", description, re.S | re.M)
    assert commands and commands[0].startswith("pip install genflow")
    assert "pip install -e" not in description and "python -m examples" not in description
    # the README keeps its two set-up commands first, for a checkout
    readme = (ROOT / "README.md").read_text()
    assert readme.split("```sh\n", 1)[1].startswith("pip install -e . && python -m examples.demo")


def test_the_version_has_one_source() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]


def test_version_command() -> None:
    done = subprocess.run([str(GENFLOW), "--version"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    home = re.escape(str(Path(genflow.__file__).parent))
    # CI's compiled run (GENFLOW_EXPECT_COMPILED=1, tests/test_compiled.py) runs this too
    which = "pure Python"
    if os.environ.get("GENFLOW_EXPECT_COMPILED") == "1":
        which = "compiled: " + ", ".join(m.rpartition(".")[2] for m in cli.COMPILED_CANDIDATES)
    assert re.fullmatch(rf"genflow {re.escape(genflow.__version__)} \({which}\) on "
                        rf"CPython 3\.\d+\.\d+, from {home}\n", done.stdout), done.stdout


def test_version_tells_a_compiled_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build is read from the loaded modules: one loaded from an extension
    module (as a compiled wheel's would be) is named."""
    import genflow.replay

    extension = importlib.machinery.EXTENSION_SUFFIXES[0]  # .cpython-311-x86_64-linux-gnu.so
    for name in cli.COMPILED_CANDIDATES:  # all pure (also in CI's compiled run), then one not
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "__file__", str(ROOT / (name.replace(".", "/") + ".py")))
    monkeypatch.setattr(genflow.replay, "__file__",
                        str(Path(genflow.replay.__file__).with_suffix(extension)))
    assert cli.build() == "compiled: replay"
    assert "(compiled: replay)" in cli.version_text()


@pytest.mark.parametrize("missing", ["attrs", "cattrs", "msgpack"])
def test_importing_without_a_dependency_says_how_to_install(missing: str) -> None:
    """A checkout imported by a Python that never installed it: one line saying
    which dependency is missing and how to install genflow, not a traceback from
    deep inside a module."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {missing!r}:\n"
        f"            raise ModuleNotFoundError({missing!r}, name={missing!r})\n"
        "sys.meta_path.insert(0, Block())\n"
        "import genflow\n")
    done = subprocess.run([sys.executable, "-c", blocker], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ModuleNotFoundError: genflow needs {missing!r}")
    assert "pip install -e ." in last
