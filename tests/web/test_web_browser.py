"""The console in a real browser: headless Chromium driven by selenium.

Log in, filter the list, open a failed instance (its step drawn red, the
timeline with its attempt and error), send an event through the confirmed
dialog and see the instance move, then see it move again, live, when an
outside system delivers an event. Screenshots are read pixel by pixel.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install 'genflow[webtest]'")
Image = pytest.importorskip("PIL.Image", reason="pip install 'genflow[webtest]' (Pillow)")

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402
from web_app import Fails, Hooks, Order, Pair  # noqa: E402
from web_helpers import SECRET, TOKEN, serving  # noqa: E402

from examples.pizza import PizzaOrder  # noqa: E402
from genflow.engine import Engine  # noqa: E402
from genflow.render.formats import STYLES  # noqa: E402
from genflow.stores import SQLiteStore  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium and chromedriver are not installed (apt-get install chromium "
           "chromium-driver)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--force-color-profile=srgb", "--hide-scrollbars", "--window-size=1400,2000"]


@pytest.fixture
def browser() -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="genflow-chromium-")
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def pixels(path: Path, color: str, tolerance: int = 6) -> int:
    """How many pixels of the screenshot are `color` (#rrggbb), give or take."""
    want = tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
    image = Image.open(path).convert("RGB")
    return sum(count for count, rgb in image.getcolors(1 << 24)
               if all(abs(a - b) <= tolerance for a, b in zip(rgb, want, strict=True)))


def test_console_in_a_browser(tmp_path: Path, browser, monkeypatch) -> None:
    monkeypatch.setenv("GENFLOW_WEB_SECRET", SECRET.decode())
    store = SQLiteStore(tmp_path / "store.db")
    engine = Engine(store, [Order, Fails, Pair, Hooks, PizzaOrder], journal=True)
    engine.start(Order(), id="order-1")
    engine.send("order-1", "add", {"name": "funghi"})
    engine.start(Order(), id="order-2")
    engine.start(Fails(), id="fails-1")
    engine.start(PizzaOrder(), id="pizza-1")
    # (the page redraws itself as the instance moves: an element read mid-redraw is stale)
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    with serving(engine, poll_ms=300) as base:
        monkeypatch.setenv("GENFLOW_WEB_URL", base)
        browser.get(f"{base}/instances")
        wait.until(lambda d: "/login" in d.current_url)
        browser.find_element(By.ID, "gf-token").send_keys(TOKEN)
        browser.find_element(By.ID, "gf-login").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#instances tbody tr"))
        listed = [r.get_attribute("data-id") for r in
                  browser.find_elements(By.CSS_SELECTOR, "#instances tbody tr")]
        assert listed == ["fails-1", "order-1", "order-2", "pizza-1"]

        # filter: failed only
        Select(browser.find_element(By.NAME, "workflow")).select_by_visible_text("web-fails")
        browser.find_element(By.ID, "gf-filter").click()
        wait.until(lambda d: "workflow=web-fails" in d.current_url)
        rows = browser.find_elements(By.CSS_SELECTOR, "#instances tbody tr")
        assert [(r.get_attribute("data-id"), r.get_attribute("data-status")) for r in rows] == [
            ("fails-1", "failed")]

        # the failed instance: its step red, its timeline with the attempt and the error
        browser.find_element(By.LINK_TEXT, "fails-1").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gf-timeline tbody tr"))
        time.sleep(0.3)  # the marks are laid on the next frame
        failed_rows = browser.find_elements(By.CSS_SELECTOR, "#gf-timeline tr.o-failed")
        assert len(failed_rows) == 1
        cells = [c.text for c in failed_rows[0].find_elements(By.TAG_NAME, "td")]
        assert cells[:3] == ["step", "explode", "main"] and cells[5] == "1"
        assert "boom" in cells[7] and cells[4]  # a duration
        assert [c.text for c in browser.find_elements(
            By.CSS_SELECTOR, "#gf-timeline tr.o-done td:nth-child(2)")] == ["prepare"]
        marked = browser.find_elements(By.CSS_SELECTOR, ".gf-diagram .m-failed")
        assert len(marked) == 1
        shot = tmp_path / "failed.png"
        browser.save_screenshot(str(shot))
        red = pixels(shot, STYLES["failed"][0])
        assert red > 2000, red  # the step's fill (the legend's swatch is ~200)
        assert pixels(shot, "#e03131", 2) >= 6 * 14  # the failed attempt's timeline bar
        assert pixels(shot, "#2f9e44", 2) >= 6 * 14  # the step that ran fine

        # every label stays inside its shape (the pizza's timers' used to spill out)
        browser.get(f"{base}/instances/pizza-1")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".gf-diagram g.gf-timer"))
        spills = browser.execute_script("""
            const out = [];
            for (const node of document.querySelectorAll('.gf-diagram g.node')) {
              const shape = node.querySelector('polygon, ellipse, path');
              if (!shape) continue;
              for (const text of node.querySelectorAll('text:not(.gf-badge)')) {
                const t = text.getBBox();  // each corner of the text inside the shape's fill
                const corners = [[t.x + 1, t.y + 1], [t.x + t.width - 1, t.y + 1],
                                 [t.x + 1, t.y + t.height - 1],
                                 [t.x + t.width - 1, t.y + t.height - 1]];
                if (!corners.every(([x, y]) => shape.isPointInFill(new DOMPoint(x, y))))
                  out.push(node.querySelector('title').textContent);
              }
            }
            return [out, document.querySelectorAll('.gf-diagram g.node').length];""")
        assert spills[0] == [] and spills[1] > 8, spills
        assert browser.find_elements(By.CSS_SELECTOR, ".gf-diagram g.gf-timer")

        # an operator sends an event, confirmed in a dialog; the instance moves
        browser.get(f"{base}/instances/order-1")
        wait.until(lambda d: d.find_elements(By.ID, "gf-act-send"))
        version = browser.find_element(By.ID, "gf-instance").get_attribute("data-version")
        browser.find_element(By.ID, "gf-act-send").click()
        Select(browser.find_element(By.ID, "gf-send-event")).select_by_visible_text("close")
        browser.find_element(By.ID, "gf-confirm").click()
        wait.until(lambda d: "sent 'close'" in d.find_element(By.ID, "gf-message").text)
        panel = browser.find_element(By.ID, "gf-instance")
        assert panel.get_attribute("data-version") != version
        assert "waiting_event at 'payment'" in browser.find_element(By.ID, "gf-threads").text
        assert engine.get("order-1").state.threads[0].stmt == "payment"
        assert [(e.kind, e.detail.get("action")) for e in engine.store.journal("order-1")
                if e.kind == "operator"] == [("operator", "send")]
        events = browser.find_elements(By.CSS_SELECTOR, "#gf-events tbody tr")
        assert [e.find_elements(By.TAG_NAME, "td")[2].text for e in events] == ["add", "close"]
        assert '"funghi"' in events[0].text

        # live: an outside system pays through the signed callback URL; the page follows
        url = engine.get("order-1").state.threads[0].events[0].req.setup_data["url"]
        from web_helpers import call

        status, _, _ = call("POST", url, 12, token=None)
        assert status == 200
        wait.until(lambda d: d.find_element(By.ID, "gf-instance")
                   .get_attribute("data-status") == "finished")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".gf-diagram .m-finished ellipse"))
        fill = browser.execute_script(
            "return getComputedStyle(document.querySelector("
            "'.gf-diagram .m-finished ellipse')).fill")
        assert fill == "rgb(150, 242, 215)" == "rgb({}, {}, {})".format(
            *(int(STYLES["finished"][0][i:i + 2], 16) for i in (1, 3, 5)))
    store.close()


def test_schedules_page_pauses_a_schedule_in_a_browser(tmp_path: Path, browser) -> None:
    """Open the schedules page, pause a schedule through its confirmed dialog, see it
    paused (on the page and in the store); Back leaves it as it was."""
    import datetime as dt

    from genflow.queues import Queue

    store = SQLiteStore(tmp_path / "store.db")
    engine = Engine(store, [Order, Fails, Pair, Hooks])
    engine.queues.define(Queue("orders", concurrency=1))
    engine.schedules.add("hourly", Order(), every=dt.timedelta(hours=1), queue="orders")
    engine.schedules.add("nightly", Order(), cron="0 2 * * *", timezone="Europe/Paris")
    for n in range(3):
        engine.start(Order(), id=f"queued-{n}", queue="orders")
    engine.queues.admit()
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    with serving(engine) as base:
        browser.get(f"{base}/login")
        browser.find_element(By.ID, "gf-token").send_keys(TOKEN)
        browser.find_element(By.ID, "gf-login").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#instances"))
        browser.find_element(By.LINK_TEXT, "Schedules").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gf-schedules tbody tr"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#gf-schedules tbody tr")
        assert [(r.get_attribute("data-schedule"), r.get_attribute("data-state"))
                for r in rows] == [("hourly", "active"), ("nightly", "active")]
        pause = 'tr[data-schedule="nightly"] button[data-action="pause"]'
        browser.find_element(By.CSS_SELECTOR, pause).click()  # then Back: nothing happens
        wait.until(lambda d: d.find_elements(By.ID, "gf-dialog"))
        assert "Pause schedule nightly?" in browser.find_element(By.ID, "gf-dialog").text
        browser.find_element(By.ID, "gf-dialog-cancel").click()
        assert not engine.schedules.get("nightly").paused
        browser.find_element(By.CSS_SELECTOR, pause).click()
        wait.until(lambda d: d.find_elements(By.ID, "gf-confirm"))
        browser.find_element(By.ID, "gf-confirm").click()
        wait.until(lambda d: d.find_elements(
            By.CSS_SELECTOR, 'tr[data-schedule="nightly"][data-state="paused"]'))
        assert "nightly: paused" in browser.find_element(By.ID, "gf-message").text
        assert engine.schedules.get("nightly").paused
        assert not engine.schedules.get("hourly").paused
        assert browser.find_elements(
            By.CSS_SELECTOR, 'tr[data-schedule="nightly"] button[data-action="resume"]')

        # the queues page: counts, and the waiting instances with their positions
        browser.find_element(By.LINK_TEXT, "Queues").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gf-queues tbody tr"))
        row = browser.find_element(By.CSS_SELECTOR, '#gf-queues tr[data-queue="orders"]')
        assert (row.get_attribute("data-running"), row.get_attribute("data-waiting")) == (
            "1", "2")
        assert [(r.get_attribute("data-id"), r.get_attribute("data-position")) for r in
                browser.find_elements(By.CSS_SELECTOR, ".gf-waiting tbody tr")] == [
            ("queued-1", "1"), ("queued-2", "2")]
        browser.find_element(By.LINK_TEXT, "queued-2").click()
        wait.until(lambda d: d.find_elements(By.ID, "gf-describe"))
        assert "waits in queue 'orders' for admission: position 2" in browser.find_element(
            By.ID, "gf-describe").text

        # the instance list's filters: started by a schedule, in a queue
        started = engine.schedules.trigger("nightly")
        browser.get(f"{base}/instances")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#instances tbody tr"))
        Select(browser.find_element(By.NAME, "schedule")).select_by_visible_text("nightly")
        browser.find_element(By.ID, "gf-filter").click()
        wait.until(lambda d: "schedule=nightly" in d.current_url)
        assert [r.get_attribute("data-id") for r in browser.find_elements(
            By.CSS_SELECTOR, "#instances tbody tr")] == [started]
        Select(browser.find_element(By.NAME, "schedule")).select_by_visible_text("any")
        Select(browser.find_element(By.NAME, "queue")).select_by_visible_text("orders")
        browser.find_element(By.ID, "gf-filter").click()
        wait.until(lambda d: "queue=orders" in d.current_url)
        assert [r.get_attribute("data-id") for r in browser.find_elements(
            By.CSS_SELECTOR, "#instances tbody tr")] == ["queued-0", "queued-1", "queued-2"]
    store.close()


def test_the_reports_schedule_and_queue_filters(tmp_path: Path, browser) -> None:
    import datetime as dt

    from genflow.queues import Queue
    from genflow.render.report import write_report

    store = SQLiteStore(tmp_path / "store.db")
    engine = Engine(store, [Order, Fails, Pair, Hooks])
    engine.queues.define(Queue("orders", concurrency=1))
    engine.schedules.add("hourly", Order(), every=dt.timedelta(hours=1), overlap="allow")
    started = engine.schedules.trigger("hourly")
    for n in range(2):
        engine.start(Order(), id=f"queued-{n}", queue="orders")
    engine.start(Order(), id="plain")
    index = write_report(engine, tmp_path / "report", svg=False)
    store.close()
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    browser.get(index.as_uri())
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#instances tbody tr"))

    def shown() -> list[str]:
        return [r.get_attribute("data-id") for r in
                browser.find_elements(By.CSS_SELECTOR, "#instances tbody tr")]

    assert shown() == sorted([started, "queued-0", "queued-1", "plain"])
    Select(browser.find_element(By.NAME, "schedule")).select_by_visible_text("hourly")
    assert shown() == [started]
    Select(browser.find_element(By.NAME, "schedule")).select_by_visible_text("any")
    Select(browser.find_element(By.NAME, "queue")).select_by_visible_text("orders")
    assert shown() == ["queued-0", "queued-1"]
    assert browser.find_elements(By.CSS_SELECTOR, '#gf-schedules tr[data-schedule="hourly"]')
