"""The pages under the Content-Security-Policy, in a real browser (Debian's Chromium,
driven by Playwright as in tests/test_web_ui_browser.py): each still works, and the
browser refuses nothing on them. The API docs render from this site's own files."""

import os
import re

import pytest
from django.contrib.auth.models import User
from django.db import connections
from playwright.sync_api import expect, sync_playwright

from patients.inbox_links import inbox_link_issue
from patients.models import Membership
from tests.test_web_ui_browser import CHROMIUM

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "correct horse battery staple"


def test_the_admin_web_ui_inbox_and_api_docs_work_and_break_no_policy_rule(
    live_server, transactional_db, organization, make_patient, monkeypatch
):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run deploy/ensure-chromium.sh (as root) first.")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    patient = make_patient(chat_id=None)
    user = User.objects.create_user("nurse", password=PASSWORD, is_staff=True)
    Membership.objects.create(user=user, organization=organization)
    refused: list[str] = []
    foreign: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else 0)
        # What the browser fetched: a request the policy blocks gets no response.
        page.on(
            "response",
            lambda r: (
                None
                if r.url.startswith((live_server.url, "data:", "blob:"))
                else foreign.append(r.url)
            ),
        )
        try:
            page.goto(f"{live_server.url}/api/scheduler/docs/")
            expect(page).to_have_url(re.compile(r"/scheduled-messages/login/\?next="))
            page.get_by_label("Username").fill("nurse")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()

            # Swagger UI, from the sidecar's files, has read the schema: operations show.
            expect(page.locator(".opblock").first).to_be_visible()
            expect(page.get_by_text("Companion scheduler API").first).to_be_visible()

            page.goto(f"{live_server.url}/api/scheduler/docs/redoc/")
            expect(page.locator("redoc h1, [role=main] h1").first).to_contain_text("Companion")

            page.goto(f"{live_server.url}/admin/")
            expect(page.locator("#site-name")).to_be_visible()
            page.goto(f"{live_server.url}/scheduled-messages/new/")
            page.wait_for_load_state()
            expect(page.get_by_label("When (phrase)")).to_be_visible()

            page.goto(f"{live_server.url}{inbox_link_issue(patient=patient).path}")
            expect(page.get_by_role("heading", name="Your messages")).to_be_visible()
            # The inbox's own style sheet applies (a static file, not an inline style).
            width = page.locator("body").evaluate("b => getComputedStyle(b).maxWidth")
            assert width != "none"
        finally:
            browser.close()
            connections.close_all()  # as in test_web_ui_browser: Playwright switches contexts
    # Redoc shows a "by Redocly" logo from its CDN: the policy refuses it, the page works.
    logo = "Loading the image 'https://cdn.redoc.ly/redoc/logo-mini.svg' violates"
    assert [text for text in refused if not text.startswith(logo)] == []
    assert foreign == []
