"""Open a Superset dashboard in headless Chromium and report which charts rendered.

Runs with the dashboards virtualenv's Python (Superset brings selenium) and Debian's
`chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver): nothing is
downloaded at run time. Logs in, opens the dashboard, waits until every chart has either
drawn (an SVG or canvas for a plot, rows for a table) or shown an error, saves a
screenshot, and prints one JSON line: {"total", "rendered", "errors", "screenshot"}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Each chart holder: rendered when it holds a drawing or table rows and no spinner; failed
# when it holds an error alert.
CHART_STATES = """
return Array.from(document.querySelectorAll('.dashboard-component-chart-holder')).map(holder => {
  const title = (holder.querySelector('.header-title, [data-test="editable-title"]') || {}).innerText || '';
  const error = holder.querySelector('[data-test="error-message"], .alert-danger, .ant-alert-error');
  const loading = holder.querySelector('.loading, [aria-label="Loading"]');
  const drawn = holder.querySelector('svg, canvas, table tbody tr');
  return {title: title.trim(), error: error ? error.innerText.trim() : null, drawn: !!drawn && !loading};
});
"""


def browser(user_data_dir: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The machine's network is closed: background services would only fail and retry.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1600,2200",
        f"--user-data-dir={user_data_dir}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="Superset's base URL")
    parser.add_argument("--dashboard", default="purchases", help="the dashboard's slug")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--screenshot", type=Path, required=True, help="PNG to write")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for every chart to settle")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as profile:
        driver = browser(Path(profile))
        try:
            driver.get(f"{args.url}/login/")
            driver.find_element(By.ID, "username").send_keys(args.username)
            driver.find_element(By.ID, "password").send_keys(args.password)
            driver.find_element(By.CSS_SELECTOR, "[type=submit], button").click()
            time.sleep(2)
            driver.get(f"{args.url}/superset/dashboard/{args.dashboard}/?standalone=1")
            deadline = time.monotonic() + args.timeout
            states: list[dict] = []
            while time.monotonic() < deadline:
                states = driver.execute_script(CHART_STATES)
                if states and all(state["drawn"] or state["error"] for state in states):
                    break
                time.sleep(2)
            time.sleep(2)  # let the last animation end before the picture
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.screenshot))
        finally:
            driver.quit()
    print(
        json.dumps(
            {
                "total": len(states),
                "rendered": sum(1 for state in states if state["drawn"] and not state["error"]),
                "errors": [state for state in states if state["error"] or not state["drawn"]],
                "screenshot": str(args.screenshot),
            }
        )
    )


if __name__ == "__main__":
    main()
