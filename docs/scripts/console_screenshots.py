"""Screenshots of the console for docs/console.md, taken by the docs build.

`python docs/scripts/console_screenshots.py DIR` starts the console over a
throwaway SQLite store holding a few pizza orders (one failed, one waiting
for its payment), opens it in headless Chromium (selenium) and writes
``console-list.png``, ``console-instance.png``, ``console-failed.png``,
``console-schedules.png`` and ``console-queues.png`` into DIR. docs/hooks.py
runs it after every build, so the pictures always show the console of the code
that built the site; nothing is checked in.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

SHOTS = ("console-list.png", "console-instance.png", "console-failed.png",
         "console-schedules.png", "console-queues.png")


def main(out: Path) -> int:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from web_app import Fails, Hooks, Order, Pair
    from web_helpers import TOKEN, serving

    from examples.pizza import PizzaOrder
    from genflow.engine import Engine
    from genflow.stores import SQLiteStore

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="genflow-shots-"))
    store = SQLiteStore(tmp / "store.db")
    engine = Engine(store, [PizzaOrder, Order, Fails, Pair, Hooks], journal=True)
    for n in range(3):
        order = engine.start(PizzaOrder(), id=f"order-{n + 1}")
        engine.send(order, "add", {"pizza": "funghi", "size": "large"})
        if n:
            engine.send(order, "checkout", {"customer": "Ada", "address": "1 Analytical Way"})
    engine.send("order-2", "confirm", {"manager": "Grace"})
    engine.start(Fails(), id="refund-7")
    import datetime as dt

    from genflow.queues import Queue

    engine.queues.define(Queue("kitchen", concurrency=2, per_key=1, key="customer"))
    engine.queues.define(Queue("couriers", concurrency=5, rate=10, per=60))
    engine.schedules.add("nightly-orders", Order(), cron="0 2 * * *", timezone="Europe/Paris",
                         jitter=dt.timedelta(minutes=5), catchup="all",
                         catchup_window=dt.timedelta(hours=6))
    engine.schedules.add("lunch-rush", PizzaOrder(), every=dt.timedelta(minutes=15),
                         queue="kitchen", overlap="allow")
    engine.schedules.trigger("nightly-orders")
    engine.schedules.pause("lunch-rush")
    for n, customer in enumerate(["Ada", "Grace", "Ada", "Edsger", "Barbara", "Ada"]):
        engine.start(PizzaOrder(customer=customer), id=f"kitchen-{n + 1}", queue="kitchen")
    engine.queues.admit()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                 "--force-color-profile=srgb", "--window-size=1300,1500",
                 f"--user-data-dir={tmp / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or
                                              "/usr/bin/chromedriver"), options=options)
    try:
        with serving(engine) as base:
            wait = WebDriverWait(driver, 20)
            driver.get(f"{base}/login")
            driver.find_element(By.ID, "gf-token").send_keys(TOKEN)
            driver.find_element(By.ID, "gf-login").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#instances tbody tr"))
            driver.save_screenshot(str(out / SHOTS[0]))
            for name, instance in ((SHOTS[1], "order-2"), (SHOTS[2], "refund-7")):
                driver.get(f"{base}/instances/{instance}")
                wait.until(lambda d: d.find_elements(By.ID, "gf-timeline"))
                time.sleep(0.3)  # the marks are laid on the next frame
                driver.save_screenshot(str(out / name))
            for name, page, table in ((SHOTS[3], "schedules", "gf-schedules"),
                                      (SHOTS[4], "queues", "gf-queues")):
                driver.get(f"{base}/{page}")
                wait.until(lambda d, table=table: d.find_elements(By.ID, table))
                driver.save_screenshot(str(out / name))
    finally:
        driver.quit()
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
