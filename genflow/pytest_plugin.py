"""The pytest plugin of genflow (registered through the `pytest11` entry point).

    pytest --genflow-module myapp.flows                  # every workflow of the module
    pytest --genflow-module myapp.flows --genflow-thorough
    pytest --genflow-module myapp.flows --genflow-store postgresql://.../prod

For each module named (or listed in the ini option ``genflow_modules``) it
adds one test per registered workflow the module defines, which draws
scenarios with `genflow.testing.runs` and checks each with `check_replay`
(`genflow.testing.suite.check_workflow`; per-workflow options in the module's
``genflow_testing`` mapping), and one test that lints the module's file
(`genflow.lint`). ``--genflow-thorough`` draws more scenarios, replays every
checkpoint in other interpreters and crashes inside every call of user code.
``--genflow-store URL`` adds the deploy check of a real store against the code
now installed (`genflow.testing.suite.replay_store`).

This module imports nothing of genflow.testing (nor hypothesis) until one of
those options is given, so pytest runs as before where genflow is installed
without its test extra.
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["pytest_addoption", "pytest_collection_modifyitems"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("genflow", "genflow workflows")
    group.addoption("--genflow-module", action="append", default=[], metavar="MODULE",
                    help="test every registered workflow this module defines (repeatable)")
    group.addoption("--genflow-thorough", action="store_true", default=False,
                    help="more scenarios, other interpreters, crashes inside steps")
    group.addoption("--genflow-examples", type=int, default=None, metavar="N",
                    help="scenarios drawn per workflow (default 20, thorough 100)")
    group.addoption("--genflow-store", default=None, metavar="URL",
                    help="deploy check: replay this store's in-flight blobs with the code "
                         "now installed")
    parser.addini("genflow_modules", "modules whose workflows genflow tests", type="linelist",
                  default=[])


def _modules(config: pytest.Config) -> list[str]:
    return [*config.getoption("genflow_module"), *config.getini("genflow_modules")]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    modules = _modules(config)
    store = config.getoption("genflow_store")
    if not modules and store is None:
        return
    from genflow.testing.suite import workflows_of

    for module in modules:
        items.append(GenflowLint.from_parent(session, name=f"genflow lint [{module}]",
                                             module=module))
        for cls in workflows_of(module):
            items.append(GenflowWorkflow.from_parent(
                session, name=f"genflow [{module}.{cls.__qualname__}]", workflow=cls))
    if store is not None:
        items.append(GenflowStore.from_parent(session, name="genflow deploy check",
                                              url=store))


class _Item(pytest.Item):
    """An item whose failure is a report in words, not a traceback into genflow."""

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, AssertionError):
            return str(excinfo.value)
        from genflow.errors import GenflowError

        if isinstance(excinfo.value, GenflowError):  # a mistake in words: say it alone
            return f"{type(excinfo.value).__name__}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, self.name


class GenflowWorkflow(_Item):
    def __init__(self, *, workflow: type, **kwargs: Any):
        super().__init__(**kwargs)
        self.workflow = workflow

    def runtest(self) -> None:
        from genflow.testing.suite import check_workflow

        config = self.config
        check_workflow(self.workflow, thorough=config.getoption("genflow_thorough"),
                       examples=config.getoption("genflow_examples"))


class GenflowLint(_Item):
    def __init__(self, *, module: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.module = module

    def runtest(self) -> None:
        import importlib

        from genflow.lint import lint

        warnings = lint(importlib.import_module(self.module))
        if warnings:
            raise AssertionError("\n".join(map(str, warnings)) + "\n(end a line with "
                                 "`# genflow: allow[...]` to allow a read on purpose)")


class GenflowStore(_Item):
    def __init__(self, *, url: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.url = url

    def runtest(self) -> None:
        from genflow.stores import open_store
        from genflow.testing.suite import assert_store_replays

        with open_store(self.url) as store:
            assert_store_replays(store)
