"""Azure Durable Functions' sub-orchestration sample (device provisioning), in genflow.

A parent gets the ids of new devices, then provisions every device at once,
each by a child workflow (fan-out), and goes on when all of them have
finished (fan-in). Each child creates an installation package, sends its URL
to the device and waits for the device's acknowledgement. The children are
started together, in the transaction of the parent's checkpoint, with ids
derived from the parent's (`<parent>/provision/<counter>/<index>`: Azure's
sample builds them by hand), and any worker runs them. docs/together.md
compares the two samples' lines.

`DEVICES` stands in for the device service (its calls are recorded).

Run it: ``python -m examples.device_provisioning``.
"""

from __future__ import annotations

import attrs

import genflow
from genflow import Children, On, Step, Wait

__all__ = ["DEVICES", "DeviceProvisioning", "DeviceService", "ProvisionNewDevices"]


class DeviceService:
    """The devices' back end: new device ids, packages, messages to devices."""

    def __init__(self, new: list[str]) -> None:
        self.new, self.sent = new, {}

    def get_new_device_ids(self) -> list[str]:
        return list(self.new)

    def create_installation_package(self, device_id: str) -> str:
        return f"https://packages.example.com/{device_id}?sas=token"

    def send_package_url(self, device_id: str, url: str) -> None:
        self.sent[device_id] = url


DEVICES = DeviceService(["dev-1", "dev-2", "dev-3"])


@genflow.workflow("device-provisioning")
@attrs.define
class DeviceProvisioning:
    device_id: str
    sas_url: str = ""

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("create installation package", self.create_package)
        yield Step("send package url to device", self.send_url)
        yield Wait("download completed", On("download completed ack"))

    def create_package(self) -> None:
        self.sas_url = DEVICES.create_installation_package(self.device_id)

    def send_url(self) -> None:
        DEVICES.send_package_url(self.device_id, self.sas_url)


@genflow.workflow("provision-new-devices")
@attrs.define
class ProvisionNewDevices:
    device_ids: list[str] = attrs.field(factory=list)

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("get new device ids", self.get_new_device_ids)
        yield Children("provision", [DeviceProvisioning(d) for d in self.device_ids])

    def get_new_device_ids(self) -> None:
        self.device_ids = DEVICES.get_new_device_ids()


def main() -> None:
    from genflow import Engine, open_store

    engine = Engine(open_store("sqlite:///:memory:"))
    parent = engine.start(ProvisionNewDevices(), id="provision-batch-1")
    engine.work(until_idle=True)  # every child waits for its device now
    for child in engine.list(parent=parent):
        engine.send(child.id, "download completed ack")  # each device acknowledges
    engine.work(until_idle=True)
    print(f"{engine.get(parent).status.value}: {sorted(DEVICES.sent)}")
    for child in engine.list(parent=parent):
        print(f"  {child.id}: {child.status}")


if __name__ == "__main__":
    main()
