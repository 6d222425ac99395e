"""The web UI in a real headless browser: Debian's Chromium driven by Playwright.

Playwright never downloads a browser here (install it with
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1); it drives /usr/bin/chromium, which
deploy/ensure-chromium.sh installs.
"""

import os
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connections
from playwright.sync_api import expect, sync_playwright

from patients.models import Membership
from scheduling.models import MessageStatus, ScheduledMessage

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PASSWORD = "correct horse battery staple"
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def phone_browser():
    """A page in headless Chromium, sized like a phone."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport=PHONE)
        page.set_default_timeout(10_000)
        try:
            yield page
        except BaseException:
            screenshot(page, "web_ui_failure.png")  # what the browser showed, for CI
            raise
        finally:
            browser.close()
            # ORM calls made while Playwright runs get their own connection: Django keeps
            # connections per context, and Playwright's sync API switches contexts. Closed
            # here, or the test database could not be dropped at the end of the session.
            connections.close_all()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_a_provider_previews_saves_and_cancels_a_recurring_message_on_a_phone(
    live_server, transactional_db, organization, make_patient, monkeypatch
):
    if not os.access(CHROMIUM, os.X_OK):
        # Not a skip: CI must run the browser test, so a missing browser is a failure.
        pytest.fail(f"{CHROMIUM} is missing: run deploy/ensure-chromium.sh (as root) first.")
    # Playwright's sync API keeps an event loop running in this thread, which Django
    # takes for async code; the ORM calls below are plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    patient = make_patient(zone="America/New_York")
    user = User.objects.create_user("nurse", password=PASSWORD)
    Membership.objects.create(user=user, organization=organization)
    with phone_browser() as page:
        page.goto(f"{live_server.url}/scheduled-messages/")
        expect(page).to_have_url(re.compile(r"/scheduled-messages/login/\?next="))
        page.get_by_label("Username").fill("nurse")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Scheduled messages")).to_be_visible()

        page.get_by_role("link", name="New message").click()
        page.wait_for_load_state()  # htmx wires up the inputs once the page has loaded
        page.get_by_label("Patient").select_option(label=patient.name)
        page.get_by_label("Or write the text").fill("Time for your check-in.")
        page.get_by_label("When (phrase)").fill("daily at 08:00")
        # The preview comes from the server (htmx) while nothing is saved yet.
        occurrences = page.locator("#preview ol li")
        expect(occurrences).to_have_count(5)
        expect(occurrences.first).to_contain_text(re.compile(r"08:00 E[SD]T"))
        assert not ScheduledMessage.objects.exists()
        preview_shot = screenshot(page, "web_ui_create_preview.png")

        page.get_by_label("When (phrase)").fill("dialy at 08:00")
        expect(page.locator("#preview")).to_contain_text('unknown word "dialy"')
        page.get_by_label("When (phrase)").fill("daily at 08:00")
        expect(occurrences).to_have_count(5)

        page.get_by_role("button", name="Schedule").click()
        expect(page.get_by_text(re.compile(r"Message #\d+ scheduled\."))).to_be_visible()
        message = ScheduledMessage.objects.get()
        assert message.recurrence == "FREQ=DAILY;BYHOUR=8;BYMINUTE=0"

        page.once("dialog", lambda dialog: dialog.accept())  # "Cancel message #...?"
        page.get_by_role("button", name="Cancel message").click()
        expect(page.get_by_text(f"Message #{message.pk} cancelled.")).to_be_visible()
        expect(page.locator("h1 .badge")).to_have_text("Cancelled")
        message.refresh_from_db()
        assert message.status == MessageStatus.CANCELLED
        cancelled_shot = screenshot(page, "web_ui_cancelled.png")

        for shot in (preview_shot, cancelled_shot):
            assert shot.is_file() and shot.stat().st_size > 0
