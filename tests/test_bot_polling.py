"""The same handlers under `manage.py run_telegram_bot`: long polling against the fake
Bot API server (getUpdates), in a subprocess on the test database."""

import os
import signal
import subprocess
import sys

import pytest

from patients.models import Channel
from scheduling.models import ScheduledMessage
from tests.conftest import ROOT, test_database_url
from tests.fakes.telegram_server import message_update


@pytest.fixture
def poller(transactional_db, fake_telegram, settings, tmp_path):
    log = tmp_path / "bot.log"
    env = {**os.environ, "DATABASE_URL": test_database_url(), "DATABASE_CONN_MAX_AGE": "0",
           "TELEGRAM_API_BASE_URL": fake_telegram.base_url,
           "TELEGRAM_BOT_TOKEN": settings.TELEGRAM_BOT_TOKEN}  # fmt: skip
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_telegram_bot", "--timeout", "1"], cwd=ROOT,
            env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    yield process, log
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_polling_runs_a_command_end_to_end_and_stops_on_sigterm(poller, fake_telegram, patient):
    process, log = poller
    chat_id = patient.contacts.get(channel=Channel.TELEGRAM).address
    fake_telegram.push_update(message_update(chat_id, "/schedule daily 08:00 Take pills"))

    answered = fake_telegram.wait_for(lambda: fake_telegram.sent(chat_id), timeout=30)

    assert answered, log.read_text(errors="replace")[-3000:]
    message = ScheduledMessage.objects.get(patient=patient)
    assert message.content == "Take pills" and message.created_by_patient
    (reply,) = fake_telegram.sent(chat_id)
    assert f"Reminder #{message.pk} saved" in reply.params["text"]
    assert fake_telegram.calls("deleteWebhook"), "polling removes a webhook first"
    # The next getUpdates confirms the update, so a restart would not run it again.
    assert fake_telegram.wait_for(lambda: not fake_telegram.pending_updates(), timeout=10)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0, log.read_text(errors="replace")[-3000:]
