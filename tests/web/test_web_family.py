"""The console's links between instances: a parent's page links each child, a
child's page links its parent, and an instance's kept messages are listed in
the order they will be delivered. First the view the page is drawn from, then
the page itself in headless Chromium."""

from __future__ import annotations

import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import genflow
from genflow import Child, Engine, On, Wait
from genflow.clock import FakeClock
from genflow.render.views import instance_view
from genflow.stores import SQLiteStore


@genflow.workflow("web-family-kid")
@attrs.define
class Kid:
    got: list[str] = attrs.field(factory=list)

    def definition(self):  # type: ignore[no-untyped-def]
        yield Wait("ready?", On("ready", self.took))
        yield Wait("go?", On("go", self.took))

    def took(self, word: str) -> None:
        self.got.append(word)


@genflow.workflow("web-family-parent")
@attrs.define
class Parent:
    kid: Kid | None = None

    def definition(self):  # type: ignore[no-untyped-def]
        yield Child("kid", Kid(), into="kid")


def family(tmp_path: Path) -> tuple[Engine, str]:
    """A parent waiting on its child; the child waits for 'ready' and keeps two
    early 'go' messages in its mailbox."""
    engine = Engine(SQLiteStore(tmp_path / "store.db"), [Parent, Kid], clock=FakeClock())
    engine.start(Parent(), id="mum")
    (kid,) = [r.id for r in engine.list(parent="mum")]
    engine.send(kid, "go", "first")
    engine.send(kid, "go", "second")
    return engine, kid


def view(engine: Engine, instance_id: str) -> dict:
    """What the console's page of `instance_id` is drawn from."""
    children = [(r.id, r.status) for r in engine.list(parent=instance_id)]
    return instance_view(engine.get(instance_id), now=engine.clock(), children=children)


def test_the_view_names_parent_children_and_kept_messages(tmp_path: Path) -> None:
    engine, kid = family(tmp_path)
    parent = view(engine, "mum")
    assert parent["children"] == [{"id": kid, "status": "waiting"}]
    assert parent["parent"] is None
    assert parent["mailbox"] == {"kept": [], "undelivered": []}
    child = view(engine, kid)
    assert child["parent"] == {"id": "mum", "index": 0}
    assert [(m["seq"], m["event"], m["payload"]) for m in child["mailbox"]["kept"]] == [
        (0, "go", "first"), (1, "go", "second")]
    assert child["mailbox"]["undelivered"] == []


@pytest.mark.parametrize("odd", ["a/b", "50%/off", "x%2Fy", "é/ü", "sp ace/+plus"])
def test_an_id_with_slashes_and_percents_is_one_path_segment(tmp_path: Path, odd: str,
                                                             monkeypatch) -> None:
    """A child's id holds "/", and any id may hold "%": sent percent-encoded, each
    reaches the API and the console's routes as the id it is, never split."""
    pytest.importorskip("starlette", reason="pip install 'genflow[web]'")
    from web_helpers import SECRET, call, serving

    monkeypatch.setenv("GENFLOW_WEB_SECRET", SECRET.decode())
    engine, kid = family(tmp_path)
    engine.start(Kid(), id=odd)
    with serving(engine) as base:
        for instance_id in (kid, odd):
            path = urllib.parse.quote(instance_id, safe="")
            status, body, _ = call("GET", f"{base}/api/v1/instances/{path}")
            assert (status, body["id"]) == (200, instance_id)
            status, body, _ = call("POST", f"{base}/api/v1/instances/{path}/events/ready",
                                   "now")
            assert status == 200, body
            assert engine.get(instance_id).data.got[0] == "now"
            status, body, _ = call("GET", f"{base}/console/instances/{path}/view")
            assert (status, body["id"]) == (200, instance_id)
        status, body, _ = call("GET", f"{base}/api/v1/instances/a%2Fnone")
        assert status == 404 and "a/none" in body["error"]["message"]


webdriver = pytest.importorskip("selenium.webdriver", reason="pip install 'genflow[webtest]'")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium "
                    "chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="genflow-chromium-")
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,2000",
                 f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_parent_and_child_link_each_other_in_the_console(tmp_path: Path, browser,
                                                         monkeypatch) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from web_helpers import SECRET, TOKEN, serving

    monkeypatch.setenv("GENFLOW_WEB_SECRET", SECRET.decode())
    engine, kid = family(tmp_path)
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    with serving(engine) as base:
        browser.get(f"{base}/instances/mum")
        wait.until(lambda d: "/login" in d.current_url)
        browser.find_element(By.ID, "gf-token").send_keys(TOKEN)
        browser.find_element(By.ID, "gf-login").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gf-family li.gf-child"))
        (child,) = browser.find_elements(By.CSS_SELECTOR, "#gf-family li.gf-child")
        assert child.get_attribute("data-id") == kid and "waiting" in child.text
        assert not browser.find_elements(By.ID, "gf-mailbox")  # the parent keeps none
        child.find_element(By.TAG_NAME, "a").click()

        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gf-family li.gf-parent"))
        # (the child's id holds "/": one path segment, encoded)
        assert browser.current_url.endswith("/instances/" + urllib.parse.quote(kid, safe=""))
        rows = browser.find_elements(By.CSS_SELECTOR, "#gf-mailbox tbody tr")
        assert [(r.get_attribute("data-seq"), r.get_attribute("data-state"))
                for r in rows] == [("0", "kept"), ("1", "kept")]
        assert ['"first"' in rows[0].text, '"second"' in rows[1].text] == [True, True]
        browser.find_element(By.CSS_SELECTOR, "#gf-family li.gf-parent a").click()
        wait.until(lambda d: d.current_url.endswith("/instances/mum"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gf-family li.gf-child"))
