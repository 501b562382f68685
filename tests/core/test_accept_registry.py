"""Acceptance: `@genflow.workflow` written without its name, as a decorator
often is, says what to write instead of "needs a non-empty string name"."""

from __future__ import annotations

import attrs
import pytest

import genflow
from genflow import DefinitionError, Step


def test_the_decorator_without_its_name_says_what_to_write() -> None:
    with pytest.raises(DefinitionError, match=r"write @genflow.workflow\('order'\) above "
                                              r"class .*Order"):
        @genflow.workflow  # type: ignore[arg-type]
        @attrs.define
        class Order:
            def definition(self):
                yield Step("pack", lambda: None)


@pytest.mark.parametrize("name", ["", 5, None])
def test_a_name_that_is_not_text_is_refused(name) -> None:
    with pytest.raises(DefinitionError, match="a workflow needs a non-empty string name"):
        genflow.workflow(name)
