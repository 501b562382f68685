"""Temporal's child-workflow sample (samples-python, hello/hello_child_workflow.py), in genflow.

A greeting workflow starts a child workflow that composes the greeting, waits
for it to finish and returns its result. The child is an ordinary instance
(any worker runs it, `genflow list --parent` finds it); `Child` starts it in
the same store transaction as the parent's checkpoint, so a crash never
starts it twice, and the child's text reaches the parent typed, in its
`greeting` field. docs/together.md compares the two samples' lines.

Run it: ``python -m examples.child_workflow``.
"""

from __future__ import annotations

import attrs

import genflow
from genflow import Child, Engine, Step, open_store


@genflow.workflow("compose-greeting")
@attrs.define
class ComposeGreeting:
    greeting: str
    name: str
    text: str = ""

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("compose", self.compose)

    def compose(self) -> None:
        self.text = f"{self.greeting}, {self.name}!"


@genflow.workflow("greeting")
@attrs.define
class Greeting:
    name: str
    greeting: str = ""

    def definition(self):  # type: ignore[no-untyped-def]
        yield Child("compose", ComposeGreeting("Hello", self.name), into="greeting",
                    result="text")


def main(url: str = "sqlite:///:memory:") -> str:
    engine = Engine(open_store(url))
    engine.start(Greeting("World"), id="hello-child-workflow-workflow-id")
    engine.work(until_idle=True)  # a worker: runs the child, then the parent goes on
    result = engine.get("hello-child-workflow-workflow-id").data.greeting
    print(f"Result: {result}")
    return result


if __name__ == "__main__":
    main()
