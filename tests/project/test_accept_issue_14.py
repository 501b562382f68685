"""Acceptance of issue 14's public surface, as a newcomer reads it: the top
level is what a workflow author uses, the pure operations and State are
`genflow.lowlevel` (and still importable from `genflow`, as the design
contract names them), errors live in `genflow.errors`, and the API
reference presents the three layers so."""

from __future__ import annotations

from pathlib import Path

import attrs

import genflow
import genflow.errors
import genflow.lowlevel
from genflow import On, Step, Wait

ROOT = Path(__file__).resolve().parents[2]


@genflow.workflow("accept14-greeter")
@attrs.define
class Greeter:
    said: str = ""

    def definition(self):
        yield Step("prepare", self.prepare)
        yield Wait("name?", On("name", self.greet))

    def prepare(self) -> None:
        self.said = "ready"

    def greet(self, name: str) -> None:
        self.said = f"hello {name}"


def test_the_top_level_is_the_authors_and_the_contract_names_still_work() -> None:
    from genflow import Engine, open_store  # the README's import

    assert {"Engine", "open_store", "workflow", "Step", "Retry", "current_step",
            "GenflowError"} <= set(genflow.__all__)
    assert not {"resume", "handle_callback", "State"} & set(genflow.__all__)
    for name in ("resume", "handle_callback", "deliver", "locate", "State", "CheckpointType"):
        assert getattr(genflow, name) is getattr(genflow.lowlevel, name)
    assert Engine.__module__ == "genflow.engine" and callable(open_store)
    for name in genflow.errors.__all__:
        assert hasattr(genflow.errors, name)


def test_the_low_level_layer_moves_an_instance_by_itself() -> None:
    wf = Greeter()
    state = genflow.lowlevel.new_state("g-1", wf)
    seen: list[genflow.lowlevel.CheckpointType] = []
    genflow.lowlevel.resume(wf, state, seen.append)
    assert [k for k in seen if k.durable] == [genflow.lowlevel.CheckpointType.AFTER_STEP]
    where = genflow.lowlevel.locate(wf, state, genflow.lowlevel.MAIN_THREAD)
    assert where.statement.name == "name?"
    genflow.lowlevel.send(wf, state, "name", "Ada", seen.append)
    assert wf.said == "hello Ada" and state.status is genflow.lowlevel.WorkflowStatus.FINISHED
    assert genflow.lowlevel.CheckpointType.AFTER_EVENT in seen
    durable = {k for k in genflow.lowlevel.CheckpointType if k.durable}
    assert durable == set(genflow.lowlevel.CheckpointType) - {
        genflow.lowlevel.CheckpointType.AFTER_RESUME}


def test_the_reference_presents_the_three_layers() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text()
    intro = reference.split("## ", 1)[0]
    for layer in ("`genflow`", "`genflow.lowlevel`", "`genflow.errors`"):
        assert layer in intro
    assert "deliver" in reference and "locate" in reference
