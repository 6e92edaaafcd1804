"""The dashboard in a real browser (Debian's Chromium through Playwright) against real daphne and
qcluster processes on the test database: a trainer fine-tunes from the form and watches it live,
a maintainer activates and compares, a viewer sees no controls. Screenshots of every tab are
written to var/screenshots/ on every run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from models_mgmt.choices import Role
from models_mgmt.services import dataset_import_builtin
from tests.factories import AIModelFactory, UserFactory, grant
from tests.live import LiveProcesses

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
MODEL = "browser-model"
# Whether a drop-down is wide enough for its longest choice (a select cannot wrap: it cuts the text).
SELECT_FITS = """(selector) => {
  const select = document.querySelector(selector);
  const style = getComputedStyle(select);
  const context = document.createElement("canvas").getContext("2d");
  context.font = style.font;
  const widest = Math.max(...Array.from(select.options, (option) => context.measureText(option.text).width));
  const arrow = 24;
  return widest <= select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - arrow;
}"""


@pytest.fixture
def server(transactional_db, tmp_path, settings):
    """daphne + qcluster as separate processes on the test database (embedded transport)."""
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    # DEBUG: WhiteNoise serves static files from the finders, no collectstatic in tests.
    live = LiveProcesses(tmp_path / "artifacts", tmp_path / "stack.log", TRAINING_WORKERS="1", DEBUG="true")
    try:
        port = live.web()
        live.qcluster()
        yield f"http://127.0.0.1:{port}", live.log_path
    finally:
        live.stop()


@pytest.fixture
def browser(server, people):
    """Started after the database rows exist and stopped before they are flushed: Playwright's sync
    API runs an event loop in this thread, where Django refuses database calls."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def people(transactional_db):
    model = AIModelFactory(name=MODEL, default_dataset=dataset_import_builtin(name="sp500"))
    grant(model.owner, model, Role.MAINTAINER)
    users = {}
    for role in (Role.TRAINER, Role.MAINTAINER, Role.VIEWER):
        users[role] = UserFactory(username=f"browser-{role}", role=role)
        grant(users[role], model, role)
    return users


class Session:
    """One signed-in browser context that records console errors and uncaught exceptions."""

    def __init__(self, browser, base: str, username: str, width: int = 1280):
        self.base = base
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.expected: list[str] = []  # substrings of console errors a step provokes on purpose
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.goto(f"{base}/model-management/")
        assert "/accounts/login/" in self.page.url
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill("pw-123456")
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(f"{base}/model-management/")

    def _console(self, message) -> None:
        if message.type == "error" and not any(e in message.text for e in self.expected):
            self.errors.append(f"console: {message.text}")

    def open(self, path: str) -> None:
        self.page.goto(self.base + path)
        self.page.wait_for_load_state("networkidle")

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


def fine_tune_from_the_form(page, version: str) -> None:
    page.get_by_label("Epochs", exact=True).fill("3")
    page.get_by_label("Window start").fill("2013-01-01")
    assert page.get_by_label("Early-stopping patience (epochs)").input_value() == "3"
    page.get_by_role("button", name="Start fine-tuning").click()
    page.wait_for_selector(f"#job-result:has-text('new version {version}')", timeout=180_000)


def test_trainer_maintainer_and_viewer_in_the_browser(server, people, browser):
    base, log = server
    sessions: list[Session] = []
    try:
        # --- a trainer fine-tunes from the form and watches it live ---------------------------
        trainer = Session(browser, base, people[Role.TRAINER].username)
        sessions.append(trainer)
        page = trainer.page
        trainer.open("/model-management/")
        card = page.locator(f".model-card[data-model='{MODEL}']")
        assert card.locator("[data-action=start-training]").is_visible()
        assert page.locator("#stat-total").inner_text() == "1"
        trainer.shot("models-1280")

        card.locator("[data-action=start-training]").click()
        page.wait_for_url(f"**/model-management/fine-tuning/?model={MODEL}")
        page.wait_for_selector("#feed-state[data-state=live]")
        assert page.get_by_label("Batch size").input_value() == "64"
        for select in ("#f-dataset", "#f-baseModel", "#f-activationPolicy"):  # they used to cut their text
            assert page.evaluate(SELECT_FITS, select), select

        # A refused config: the API's reason appears beside the field, nothing starts.
        trainer.expected.append("status of 400")
        page.get_by_label("Learning rate").fill("5")
        page.get_by_role("button", name="Start fine-tuning").click()
        page.wait_for_selector("#err-learningRate:has-text('at most 1')")
        assert page.get_by_label("Learning rate").get_attribute("aria-invalid") == "true"
        page.get_by_role("button", name="Reset to defaults").click()
        assert page.get_by_label("Learning rate").input_value() == "0.001"

        page.evaluate("window.__notReloaded = true")
        fine_tune_from_the_form(page, "v1.0.0")
        assert page.evaluate("window.__notReloaded") is True, "the page reloaded while training"
        assert page.locator("#progress").get_attribute("aria-valuenow") == "100"
        assert page.locator("#progress-text").inner_text() == "100 %"
        assert page.locator("#epoch-text").inner_text().endswith("/ 3")
        page.wait_for_function("Chart.getChart('loss-chart').data.labels.length >= 1")
        trainer.shot("fine-tuning-1280")

        # A second fine-tune with another seed (the advanced section) so two versions differ.
        page.get_by_text("Advanced: trainer hyperparameters").click()
        page.get_by_label("seed", exact=True).fill("7")
        fine_tune_from_the_form(page, "v1.1.0")
        assert page.evaluate("window.__notReloaded") is True
        page.locator("#new-version-link").click()
        page.wait_for_url(f"**/model-management/versions/?model={MODEL}*")
        assert page.locator(".version-card[data-version='v1.1.0']").is_visible()
        assert page.locator(".version-card[data-version='v1.0.0']").is_visible()
        assert page.locator("[data-action=activate]").count() == 0  # trainers do not activate

        # --- a maintainer activates a version and compares two ----------------------------------
        maintainer = Session(browser, base, people[Role.MAINTAINER].username)
        sessions.append(maintainer)
        page = maintainer.page
        maintainer.open(f"/model-management/versions/?model={MODEL}")
        newest = page.locator(".version-card[data-version='v1.1.0']")
        assert newest.locator("[data-role=status]").inner_text() == "ready"
        newest.get_by_role("button", name="Activate").click()
        page.wait_for_selector(".version-card[data-version='v1.1.0'] .badge-active")
        assert newest.locator("[data-action=activate]").count() == 0
        assert page.locator("#versions-message").inner_text().startswith("v1.1.0 is now the active version")

        page.get_by_label("Compare v1.0.0").check()
        page.get_by_label("Compare v1.1.0").check()
        page.get_by_role("button", name="Compare selected").click()
        page.wait_for_selector("#compare-table", timeout=60_000)
        assert page.locator("#compare-table tr.differs").count() >= 1
        assert page.locator("#compare-table td.best").count() >= 1
        assert "v1.1.0 (active)" in page.locator("#compare-table thead").inner_text()
        maintainer.shot("versions-1280")
        page.set_viewport_size({"width": 800, "height": 900})
        maintainer.shot("versions-800")
        page.set_viewport_size({"width": 1280, "height": 900})

        maintainer.open("/model-management/")
        assert page.locator(f".model-card[data-model='{MODEL}'] [data-role=active-version]").inner_text() == "v1.1.0"

        maintainer.open("/model-management/monitoring/")
        assert page.locator("#health-table").get_by_text("Database").is_visible()
        row = page.locator(f".monitor-row[data-model='{MODEL}']")
        page.wait_for_function(
            "document.querySelector(\".monitor-row [data-role=drift]\").textContent !== 'loading…'"
            " && document.querySelector(\".monitor-row [data-role=alerts]\").textContent !== 'loading…'"
        )
        assert row.locator("[data-role=drift]").inner_text() != ""
        # the guardrails panel: a field error beside its input, then a saved policy and an evaluation
        page.locator("#guardrails-model").select_option(MODEL)
        page.wait_for_selector(f"#guardrails-form[data-ready='{MODEL}'] #guardrails-actions button[type=submit]")
        page.locator("#guardrail-latencyM").fill("9")
        maintainer.expected.append("400")
        page.locator("#guardrails-actions button[type=submit]").click()
        page.wait_for_selector("#guardrails [data-field=latencyM]:has-text('at most latencyN')")
        page.locator("#guardrail-latencyM").fill("2")
        page.locator("#guardrail-enabled").check()
        page.locator("#guardrails-actions button[type=submit]").click()
        page.wait_for_selector("#guardrails-state[data-enabled=true]")
        page.get_by_role("button", name="Evaluate now").click()
        page.wait_for_selector("#guardrails-evaluations td:has-text('manual')")
        maintainer.shot("monitoring-1280")

        # --- a viewer sees everything but no start or activate control ---------------------
        viewer = Session(browser, base, people[Role.VIEWER].username, width=800)
        sessions.append(viewer)
        page = viewer.page
        viewer.open("/model-management/")
        assert page.locator("[data-action=start-training]").count() == 0
        viewer.shot("models-800-viewer")
        viewer.open(f"/model-management/fine-tuning/?model={MODEL}")
        assert page.locator("#start-button").count() == 0 and page.locator("#stop-button").count() == 0
        assert page.locator("#no-finetune").is_visible()
        page.wait_for_selector("#job-line[data-status=succeeded]")  # watching is allowed
        viewer.shot("fine-tuning-800-viewer")
        viewer.open(f"/model-management/versions/?model={MODEL}")
        assert page.locator(".version-card").count() == 2
        assert page.locator("[data-action=activate]").count() == 0
        viewer.open("/model-management/monitoring/")
        page.wait_for_selector("#guardrails-state[data-enabled=true]")
        assert page.locator("#guardrails-actions button").count() == 0
        assert page.locator("#guardrail-latencyM").is_disabled()
        viewer.shot("monitoring-800-viewer")

        for session in sessions:
            assert session.errors == [], f"{session.errors}\n{log.read_text()[-3000:]}"
    finally:
        for session in sessions:
            session.close()
