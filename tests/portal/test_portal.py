"""The built-in dashboard in a real browser (Playwright for Python, Debian's chromium).

Run by tests/portal/run.sh (environment described there), itself run by
tests/e2e/portal_browser.rs. Every test waits on what the page shows, never on a sleep.
"""

import http.server
import json
import os
import re
import secrets
import threading
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

URL = os.environ["PORTAL_URL"].rstrip("/")
RBAC_URL = os.environ["PORTAL_RBAC_URL"].rstrip("/")
RBAC_TOKEN = os.environ["PORTAL_RBAC_TOKEN"]
SRC_HOST = os.environ["SRC_HOST"]
SRC_IMAGE = os.environ["SRC_IMAGE"]
PLATFORMS = sorted(os.environ["SRC_PLATFORMS"].split(","))
SHOTS = os.environ.get("PORTAL_SCREENSHOTS")
RUN = secrets.token_hex(3)
TIMEOUT = 60_000

expect.set_options(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=os.environ.get("PORTAL_HEADED") != "1",
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 820})
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT)
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # The page makes no request anywhere but the service's listeners.
    outside = []
    pg.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:")) else None)
    yield pg
    ctx.close()
    assert not errors, f"script errors: {errors}"
    assert not outside, f"requests outside the service: {outside}"


def shot(page, name, full=False):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=full)


def arm_get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def open_view(page, view):
    page.click(f"#nav-{view}")
    expect(page.locator(f"#view-{view}")).to_be_visible()


def create_registry(page, name, anonymous=False):
    open_view(page, "registries")
    form = page.locator("#create-form")
    form.locator('input[name="name"]').fill(name)
    form.locator('input[name="adminUserEnabled"]').check()
    if anonymous:
        form.locator('input[name="anonymousPullEnabled"]').check()
    page.click("#create-submit")
    expect(page.locator(f'tr[data-registry="{name}"]')).to_be_visible()


def start_import(page, target, image, tags, mode="NoForce"):
    open_view(page, "import")
    page.select_option("#import-target", label=target)
    page.check('input[name="sourceKind"][value="uri"]')
    page.fill('input[name="registryUri"]', SRC_HOST)
    page.fill('input[name="sourceImage"]', image)
    page.fill('textarea[name="targetTags"]', "\n".join(tags))
    page.select_option('select[name="mode"]', mode)
    page.click("#import-submit")


def op_item(page, registry, tag):
    return page.locator("li.op").filter(has_text=registry).filter(has_text=tag)


def test_create_import_watch_and_browse(page):
    page.goto(f"{URL}/")
    expect(page.locator("#live")).to_have_text("live")
    name = f"portal{RUN}"
    create_registry(page, name, anonymous=True)
    expect(page.locator("#pull-commands")).to_contain_text(f"{name}.azurecr.io/")
    shot(page, "registries")

    # A marker on the window: it survives only if the page is never reloaded.
    page.evaluate("window.__noReload = true")
    start_import(page, name, SRC_IMAGE, ["app/multi:v1"])
    shot(page, "import")
    open_view(page, "operations")
    item = op_item(page, name, "app/multi:v1")
    expect(item).to_be_visible()
    # The feed's events move the bar to 100 % and the badge to Succeeded.
    expect(item).to_have_attribute("data-status", "Succeeded")
    expect(item.locator("progress")).to_have_attribute("value", "100")
    expect(item.locator(".op-progress")).to_contain_text("100 %")
    expect(item.locator(".op-progress")).to_contain_text("blobs ")
    expect(item.locator(".op-progress")).to_contain_text(re.compile(r"manifests (\d+)/\1"))
    assert page.evaluate("window.__noReload") is True
    # The import form followed the real Azure-AsyncOperation URL to the end.
    open_view(page, "import")
    expect(page.locator("#import-status")).to_have_text("Succeeded")
    open_view(page, "operations")
    shot(page, "operations")

    # The ARM status JSON, one click away.
    item.get_by_role("button", name="ARM status JSON").click()
    expect(page.locator("#json-dialog")).to_be_visible()
    status = json.loads(page.locator("#json-body").text_content())
    assert status["status"] == "Succeeded"
    assert status["percentComplete"] == 100
    page.click("#json-close")

    # Browse: repositories -> tags -> the index's platforms, through the data plane.
    open_view(page, "browse")
    page.select_option("#browse-registry", label=name)
    page.click("#browse-form button[type=submit]")
    page.locator("#browse-repos").get_by_role("button", name="app/multi").click()
    page.locator("#browse-tags").get_by_role("button", name="v1").click()
    rows = page.locator("#browse-platforms tbody tr")
    expect(rows).to_have_count(len(PLATFORMS))
    seen = sorted(rows.nth(i).get_attribute("data-platform") for i in range(rows.count()))
    assert seen == PLATFORMS
    expect(page.locator("#browse-platforms")).not_to_contain_text("unknown")
    expect(page.locator("#browse-platforms")).to_contain_text("MB")
    shot(page, "browse")

    # The same page on a phone.
    page.set_viewport_size({"width": 390, "height": 844})
    open_view(page, "operations")
    expect(item).to_be_visible()
    shot(page, "operations-phone")


def test_a_registry_is_deleted_from_the_page(page):
    page.goto(f"{URL}/")
    name = f"gone{RUN}"
    kept = f"kept{RUN}"
    create_registry(page, kept)
    create_registry(page, name)
    row = page.locator(f'tr[data-registry="{name}"]')
    # The page asks first; accepting the question deletes through ARM's DELETE and its
    # Azure-AsyncOperation, then the list no longer has it.
    asked = []
    page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
    row.get_by_role("button", name=f"Delete {name}").click()
    expect(page.get_by_text(f"Registry {name} deleted.")).to_be_visible()
    expect(row).to_have_count(0)
    assert asked and name in asked[0], asked
    # After a reload too: the registry is gone from ARM, not only from the page.
    page.reload()
    open_view(page, "registries")
    expect(page.locator(f'tr[data-registry="{kept}"]')).to_be_visible()
    expect(page.locator(f'tr[data-registry="{name}"]')).to_have_count(0)


def test_a_failed_import_shows_its_arm_error(page):
    page.goto(f"{URL}/")
    expect(page.locator("#live")).to_have_text("live")
    name = f"portalfail{RUN}"
    create_registry(page, name)
    missing = SRC_IMAGE.split(":")[0] + ":no-such-tag"
    start_import(page, name, missing, ["app/missing:v1"])
    open_view(page, "operations")
    item = op_item(page, name, "app/missing:v1")
    expect(item).to_have_attribute("data-status", "Failed")
    shown = item.locator(".op-error").text_content()
    # The very error of the ARM status document, in full.
    item.get_by_role("button", name="ARM status JSON").click()
    expect(page.locator("#json-dialog")).to_be_visible()
    status = json.loads(page.locator("#json-body").text_content())
    page.click("#json-close")
    assert status["status"] == "Failed"
    assert shown == f'{status["error"]["code"]}: {status["error"]["message"]}', shown
    open_view(page, "import")
    expect(page.locator("#import-status")).to_have_text("Failed")
    expect(page.locator("#import-detail")).to_contain_text(status["error"]["message"])


def test_the_views_work_with_the_keyboard(page):
    page.goto(f"{URL}/")
    expect(page.locator("#live")).to_have_text("live")
    # Tab reaches the navigation; Enter opens a view.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "nav-operations":
            break
    assert page.evaluate("document.activeElement.id") == "nav-operations"
    page.keyboard.press("Enter")
    expect(page.locator("#view-operations")).to_be_visible()
    # A form is submitted with Enter from a field.
    open_view(page, "registries")
    name = f"portalkeys{RUN}"
    page.locator('#create-form input[name="name"]').fill(name)
    page.locator('#create-form input[name="name"]').press("Enter")
    expect(page.locator(f'tr[data-registry="{name}"]')).to_be_visible()


class _Blank(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<!doctype html><title>another origin</title><p>elsewhere</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


CROSS_ORIGIN_IMPORT = """
async ([api, sub, name, host, image]) => {
  const base = `${api}/subscriptions/${sub}/resourceGroups/cors-rg/providers/Microsoft.ContainerRegistry/registries/${name}`;
  const json = {"Content-Type": "application/json", "x-ms-client-request-id": crypto.randomUUID()};
  let r = await fetch(`${base}?api-version=2025-11-01`, {method: "PUT", headers: json,
    body: JSON.stringify({location: "eastus", sku: {name: "Standard"}})});
  if (!r.ok) return {error: `PUT ${r.status} ${await r.text()}`};
  r = await fetch(`${base}/importImage?api-version=2025-11-01`, {method: "POST", headers: json,
    body: JSON.stringify({source: {registryUri: host, sourceImage: image}, targetTags: ["cors/multi:v1"]})});
  const accepted = r.status;
  const url = r.headers.get("Azure-AsyncOperation");
  const retry = r.headers.get("Retry-After");
  if (accepted !== 202 || !url) return {error: `POST ${accepted}, Azure-AsyncOperation ${url}`};
  const seen = [];
  for (let i = 0; i < 120; i++) {
    const s = await (await fetch(url)).json();
    seen.push(s.status);
    if (["Succeeded", "Failed", "Canceled"].includes(s.status)) return {accepted, url, retry, seen, final: s};
    await new Promise((res) => setTimeout(res, 500));
  }
  return {error: "not finished", seen};
}
"""


def test_a_page_of_another_origin_imports_with_fetch(page):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Blank)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        origin = f"http://127.0.0.1:{server.server_address[1]}"
        page.goto(f"{origin}/")
        assert page.evaluate("location.origin") == origin != URL
        sub = page.evaluate("async (u) => (await (await fetch(u)).json()).subscriptions[0]", f"{URL}/_acr-import/portal/config")
        result = page.evaluate(CROSS_ORIGIN_IMPORT, [URL, sub, f"cors{RUN}", SRC_HOST, SRC_IMAGE])
        assert "error" not in result, result
        assert result["accepted"] == 202
        assert result["url"].startswith(f"{URL}/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/locations/")
        assert result["retry"] == "1"
        assert result["final"]["status"] == "Succeeded", result
    finally:
        server.shutdown()


def test_with_arm_rbac_the_page_uses_a_pasted_token_and_shows_the_denial(page):
    page.goto(f"{RBAC_URL}/")
    expect(page.locator("#auth")).to_be_visible()
    # Without a token, ARM's 401 text.
    expect(page.locator("#notice")).to_contain_text("AuthenticationFailed")
    page.fill("#token", RBAC_TOKEN)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-state")).to_have_text("A token is set for this tab.")
    expect(page.locator("#live")).to_have_text("live")
    # Kept in this tab's session storage, nowhere else.
    assert page.evaluate("sessionStorage.getItem('acr-import.token')") == RBAC_TOKEN
    assert page.evaluate("localStorage.length") == 0
    # A Reader may list, not create: ARM's denial, as ARM words it.
    expect(page.locator("#registries-empty")).to_be_visible()
    open_view(page, "registries")
    form = page.locator("#create-form")
    form.locator('input[name="name"]').fill(f"denied{RUN}")
    page.click("#create-submit")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("AuthorizationFailed: The client")
    expect(notice).to_contain_text("does not have authorization to perform action")
    text = notice.text_content()
    assert re.search(r"Microsoft\.(Resources/subscriptions/resourceGroups|ContainerRegistry/registries)/write", text), text
    shot(page, "rbac-denied")
