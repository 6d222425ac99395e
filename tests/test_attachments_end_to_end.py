"""A photo through the whole path with real processes: Beat, a worker, the fake Telegram
with its per-chat limit; a 429 after the photo was accepted does not send it again."""

import pytest

from scheduling.attachments import Upload
from scheduling.models import AttemptOutcome, DeliveryStatus
from scheduling.services import message_schedule
from tests.conftest import from_now
from tests.fakes.telegram_server import Reply
from tests.test_attachments import jpeg
from tests.test_end_to_end import wait_for_status

pytestmark = pytest.mark.e2e


@pytest.fixture
def shared_media_root(monkeypatch, settings, tmp_path):
    """One folder for this process and the worker (started after, with this environment)."""
    root = tmp_path / "media"
    monkeypatch.setenv("MEDIA_ROOT", str(root))
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root / "attachments")},
        },
    }
    return root


def test_a_photo_retried_after_a_429_reaches_the_chat_once_with_its_text_after_it(
    shared_media_root, celery_stack, fake_telegram, patient
):
    fake_telegram.configure(per_chat_per_second=1)
    chat_id = patient.contacts.get().address
    # The photo is accepted, the text after it is paced with a 429.
    fake_telegram.push(Reply(), Reply.too_many_requests(retry_after=1), chat_id=chat_id)
    photo, text = jpeg(), "Change the dressing as shown. " * 40  # over a caption's 1,024
    message = message_schedule(
        patient=patient,
        content=text,
        starts_at=from_now(1),
        attachment=Upload(photo, "dressing.jpg"),
    )

    delivery = wait_for_status({"message": message}, DeliveryStatus.SENT, timeout=40)

    sent = fake_telegram.sent(chat_id)
    assert [c.method for c in sent] == ["sendPhoto", "sendMessage"]
    assert [c.status for c in fake_telegram.calls("sendPhoto")] == [200]  # once
    assert sent[0].files["photo"].data == photo and sent[1].params["text"] == text.strip()
    assert delivery.parts_sent == 2
    outcomes = list(delivery.attempt_log.order_by("number").values_list("outcome", "error_code"))
    assert outcomes == [(AttemptOutcome.TRANSIENT, "rate_limited"), (AttemptOutcome.SENT, "")]
