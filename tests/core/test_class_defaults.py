"""A workflow class given where an instance is expected stands for its defaults;
a class with a field that has none is one `ArgumentError`, wherever it is given."""

from __future__ import annotations

import attrs
import pytest

import genflow
from genflow import Step, validate, walk
from genflow.errors import ArgumentError, DefinitionError, NoDefaultsError
from genflow.render import to_mermaid
from genflow.testing import check_replay


@genflow.workflow("class-defaults-needs-a-field")
@attrs.define
class NeedsOrder:
    order: str

    def definition(self):
        yield Step("ship", self.ship)

    def ship(self) -> None:
        pass


@genflow.workflow("class-defaults-has-them")
@attrs.define
class HasDefaults:
    order: str = "o-1"

    def definition(self):
        yield Step("ship", self.ship)

    def ship(self) -> None:
        pass


@pytest.mark.parametrize("use", [validate, lambda cls: walk(cls, lambda s: False), to_mermaid,
                                 check_replay],
                         ids=["validate", "walk", "to_mermaid", "check_replay"])
def test_a_class_without_defaults_is_refused_alike(use) -> None:
    with pytest.raises(NoDefaultsError, match=r"NeedsOrder is a workflow class whose fields have "
                                            r"no defaults .*(give|pass) .*NeedsOrder\(\.\.\.\)"):
        use(NeedsOrder)
    assert issubclass(NoDefaultsError, ArgumentError) and issubclass(NoDefaultsError,
                                                                     DefinitionError)


def test_a_class_with_defaults_stands_for_its_defaults() -> None:
    validate(HasDefaults)
    seen: list[str] = []
    walk(HasDefaults, lambda s: seen.append(s.name) and False)
    assert seen == ["ship"]
    assert "ship" in to_mermaid(HasDefaults)
    assert to_mermaid(HasDefaults) == to_mermaid(HasDefaults())
