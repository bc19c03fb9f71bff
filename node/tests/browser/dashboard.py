#!/usr/bin/env python3
"""Drives one node's web dashboard in Debian's chromium through Playwright.

Run by node/tests/dashboard.rs against a network it started; the only
argument is a JSON file with: url, login_url (a one-time login link, as
`modchain dashboard` prints it), peers (every peer id the page must list),
self_peer, modchain (the binary), data_dir (the node's), wat (a module for
the CLI job), greeting (what the page's example job prints), chromium,
screenshot. Steps:

1. not logged in, the page says how to log in (`modchain dashboard`);
2. the login link sets an HttpOnly, SameSite=Strict cookie, no script can
   read, and leaves the address bar; the page lists every peer and the
   elected orchestrators;
3. a job submitted from the page completes, its output and its receipt
   appear;
4. a job submitted with the CLI appears, completes and gets its receipt
   without a reload;
5. a job that never ends is cancelled from the page.

Any console error, page error, failed request or HTTP error answer fails the
run. Exit status 0 on success; otherwise the reason is on stderr.
"""

import json
import subprocess
import sys
import tempfile
import time

STEP_TIMEOUT_MS = 60_000
T0 = time.monotonic()
# Runs until it is stopped: for the cancel button.
SPIN_WAT = """(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $forever (br $forever))))
"""


def say(text):
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def fail(text):
    print(f"FAIL: {text}", file=sys.stderr, flush=True)
    sys.exit(1)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        fail(
            f"Playwright for Python is not installed ({e}): "
            "pip install 'playwright==1.65.*' (it drives the system chromium; "
            "`playwright install` is not needed)"
        )

    problems = []
    with tempfile.TemporaryDirectory(prefix="modchain-chromium-") as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=cfg["chromium"],
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
            viewport={"width": 1400, "height": 1000},
        )
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.set_default_timeout(STEP_TIMEOUT_MS)
        watching = {"on": True}

        def note(text):
            if watching["on"]:
                problems.append(text)

        page.on(
            "console",
            lambda m: note(f"console.{m.type}: {m.text} at {m.location}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: note(f"page error: {e}"))
        page.on(
            "requestfailed",
            lambda r: note(f"request failed: {r.method} {r.url}: {r.failure}")
            # The page aborts a job's log stream itself when another job is opened.
            if r.failure != "net::ERR_ABORTED" else None,
        )
        page.on("response", lambda r: note(f"HTTP {r.status} for {r.request.method} {r.url}") if r.status >= 400 else None)
        navigations = []
        page.on("framenavigated", lambda fr: navigations.append(fr.url) if fr == page.main_frame else None)

        try:
            run(page, ctx, cfg, navigations, problems, watching)
        except Exception as e:  # noqa: BLE001 - any failure is reported with a screenshot
            shot(page, cfg["screenshot"])
            fail(f"{type(e).__name__}: {e}\nproblems so far: {problems}")
        # Closing the browser aborts the event stream: not the page's fault.
        watching["on"] = False
        ctx.close()
    if problems:
        fail("the page reported errors:\n  " + "\n  ".join(problems))
    say("dashboard test passed")


def shot(page, path):
    try:
        page.screenshot(path=path, full_page=True)
        print(f"screenshot: {path}", file=sys.stderr, flush=True)
    except Exception as e:  # noqa: BLE001 - best effort, the failure itself is what matters
        print(f"no screenshot: {e}", file=sys.stderr, flush=True)


def check(problems):
    if problems:
        raise AssertionError("the page reported errors: " + "; ".join(problems))


def wait_job(page, job_id, what):
    """Waits until the jobs table shows the job ended, and that it completed."""
    row = f'#jobs tr[data-job="{job_id}"]'
    page.wait_for_selector(row)
    page.wait_for_function(
        """(sel) => { const r = document.querySelector(sel);
                     return r && ['completed', 'failed', 'cancelled'].includes(r.dataset.state); }""",
        arg=row,
        timeout=STEP_TIMEOUT_MS,
    )
    state = page.get_attribute(row, "data-state")
    if state != "completed":
        raise AssertionError(f"{what} {job_id} ended {state}: {page.inner_text(row)}")
    page.wait_for_selector(f'#receipts tr[data-job="{job_id}"]')


def run(page, ctx, cfg, navigations, problems, watching):
    # Not logged in: the API refuses the page's calls (401s are expected
    # here), and the page says how to log in.
    watching["on"] = False
    page.goto(cfg["url"])
    msg = page.wait_for_selector(".message.error[data-key='login']")
    if "modchain dashboard" not in msg.inner_text():
        raise AssertionError(f"unclear message without a login: {msg.inner_text()!r}")
    say("not logged in, the page says how to log in")

    page.goto(cfg["login_url"])
    # The old page's requests are gone with it; from here on, any error counts.
    problems.clear()
    watching["on"] = True
    if "token=" in page.url:
        raise AssertionError(f"the login token stayed in the address bar: {page.url}")
    cookies = [c for c in ctx.cookies(cfg["url"]) if c["name"].startswith("modchain_session")]
    if len(cookies) != 1 or not cookies[0]["httpOnly"] or cookies[0]["sameSite"] != "Strict":
        raise AssertionError(f"the session cookie is not HttpOnly and SameSite=Strict: {cookies}")
    if "modchain_session" in page.evaluate("document.cookie"):
        raise AssertionError("a script can read the session cookie")
    page.wait_for_selector("#live.on")
    say("logged in through the one-time link, event stream live")

    for peer in cfg["peers"]:
        page.wait_for_selector(f'#peers tr[data-peer="{peer}"]')
    own = page.get_attribute(f'#peers tr[data-peer="{cfg["self_peer"]}"]', "class") or ""
    if "mine" not in own:
        raise AssertionError("the page does not mark its own node in the peer list")
    page.wait_for_selector("#orchestrators [data-orchestrator]")
    page.wait_for_function("() => document.getElementById('self-peer-id')?.textContent.length > 0")
    if page.inner_text("#self-peer-id").strip() != cfg["self_peer"]:
        raise AssertionError(f"this node's panel shows {page.inner_text('#self-peer-id')!r}")
    say(f"all {len(cfg['peers'])} peers listed, orchestrators shown")
    check(problems)

    page.wait_for_selector('#adapter option[value="wasm"]', state="attached")
    page.click("#submit-button")
    page.wait_for_selector("#submit-result[data-job]")
    job = page.get_attribute("#submit-result", "data-job")
    say(f"submitted {job[:8]} from the page")
    wait_job(page, job, "the page's job")
    page.wait_for_selector(f'#job-detail[data-job="{job}"][data-state="completed"]')
    page.wait_for_selector("#job-stdout")
    if cfg["greeting"] not in page.inner_text("#job-stdout"):
        raise AssertionError(f"the job's stdout is {page.inner_text('#job-stdout')!r}")
    page.wait_for_function(
        "(g) => document.getElementById('job-logs').textContent.includes(g)", arg=cfg["greeting"]
    )
    page.wait_for_selector("#job-receipt")
    say(f"page job {job[:8]} completed, output and receipt shown")
    check(problems)

    # From here on the page must not reload: a mark on window would be lost.
    page.evaluate("window.__modchainMark = 'still here'")
    before = len(navigations)
    out = subprocess.run(
        [cfg["modchain"], "--data-dir", cfg["data_dir"], "submit", "wasm", cfg["wat"]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise AssertionError(f"modchain submit failed: {out.stderr}")
    cli_job = out.stdout.strip().splitlines()[0].strip()
    say(f"submitted {cli_job[:8]} with the CLI")
    wait_job(page, cli_job, "the CLI's job")
    if page.evaluate("window.__modchainMark") != "still here" or len(navigations) != before:
        raise AssertionError(f"the page reloaded: {navigations[before:]}")
    say(f"CLI job {cli_job[:8]} appeared and completed live, no reload")

    # A job that never ends, cancelled from the page.
    page.fill("#wat", SPIN_WAT)
    page.click("#submit-button")
    page.wait_for_function(
        "(old) => { const e = document.getElementById('submit-result'); return e.dataset.job && e.dataset.job !== old; }",
        arg=job,
    )
    spin = page.get_attribute("#submit-result", "data-job")
    page.wait_for_selector(f'#job-detail[data-job="{spin}"][data-state="running"]')
    page.click("#job-cancel")
    page.wait_for_selector(f'#jobs tr[data-job="{spin}"][data-state="cancelled"]')
    say(f"job {spin[:8]} cancelled from the page")

    page.wait_for_selector("#jobs-chart svg rect")
    if page.locator("#earnings-chart svg path").count() != 2:
        raise AssertionError("the earnings chart has no lines")
    page.wait_for_selector("#reputation tbody tr[data-node]")
    if "credits" not in page.inner_text("#balance-value"):
        raise AssertionError(f"no balance: {page.inner_text('#balance-value')!r}")
    check(problems)
    page.screenshot(path=cfg["screenshot"], full_page=True)
    say(f"screenshot: {cfg['screenshot']}")


if __name__ == "__main__":
    main()
