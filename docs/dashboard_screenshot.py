"""Take docs/dashboard.png: the dashboard of a real ``framework run``, with a job submitted
from its form streaming, other jobs in flight and ended, in a headless Chromium.

Run from the repository: ``python docs/dashboard_screenshot.py [OUTPUT.png]``. It needs
Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (the ``test``
extra); the runner hosts the workers of ``tests/dashboard_plugin.py``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from dashboard_harness import Served, find_browser, new_driver, serve  # noqa: E402


def submit(served: Served, worker: str, name: str | None, payload: dict[str, object]) -> None:
    """A job from another client, as a script or another program would send it."""
    with served.client() as client:
        client.post(
            "/v1/jobs",
            params={"wait": "false"},
            json={"worker": worker, "name": name, "payload": payload},
        )


def main(output: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser = find_browser()
    if browser is None:
        sys.exit("needs chromium and chromedriver (Debian: chromium chromium-driver)")
    with serve() as served:
        driver = new_driver(browser, width=1440, height=1150)
        try:
            driver.get(served.url + "/")
            WebDriverWait(driver, 10).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "#connection[data-state=live]")
            )
            # A few outcomes first, so that the jobs view has a history.
            submit(served, "echo", None, {"text": "hello"})
            submit(served, "narrator", "refuse", {})
            submit(served, "narrator", "tell", {"topic": "moth", "words": 3, "delay": 0.05})
            time.sleep(0.8)
            submit(served, "narrator", "wait", {"seconds": 30})
            # The job watched in the form.
            Select(driver.find_element(By.ID, "submit-worker")).select_by_value("narrator")
            Select(driver.find_element(By.ID, "submit-job")).select_by_value("tell")
            payload = driver.find_element(By.ID, "submit-payload")
            payload.clear()
            payload.send_keys(json.dumps({"topic": "lighthouse", "words": 40, "delay": 0.12}))
            driver.find_element(By.ID, "submit-button").click()
            background = threading.Thread(
                target=submit,
                args=(served, "narrator", "tell", {"topic": "tide", "words": 60, "delay": 0.1}),
            )
            background.start()
            time.sleep(2.5)  # mid-stream: updates, chunks and events on screen
            driver.save_screenshot(str(output))
            background.join()
        finally:
            driver.quit()
    print(f"wrote {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "dashboard.png")
