"""Photos, voice notes and documents: checked for their channel when a message is written
(a 400 naming the limit, nothing saved), stored encrypted through Django's storage API,
and sent by each adapter against fake providers as strict as the real ones."""

import hashlib
import io
import struct
import time
from email import message_from_bytes

import pytest
import requests
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from channels_app.attachments import CAPTION_LENGTH, MB, Attachment, check_attachment
from channels_app.base import OutboundMessage, PermanentError
from channels_app.email import EmailChannel
from channels_app.models import InboxMessage
from channels_app.telegram import TelegramChannel
from channels_app.whatsapp import WhatsAppChannel
from patients.inbox_links import inbox_link_issue
from patients.models import Channel, Contact
from patients.provisioning import provider_create
from scheduling.attachments import Upload, attachment_bytes, attachment_link
from scheduling.delivery import deliver
from scheduling.dispatch import dispatch_due
from scheduling.models import Attachment as AttachmentRow
from scheduling.models import AttemptOutcome, Delivery, DeliveryStatus, ScheduledMessage
from scheduling.services import message_schedule
from tests.conftest import ago, from_now
from tests.fakes.telegram_server import Reply
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.fakes.whatsapp_server import FakeWhatsApp
from tests.test_api import API, token_client
from tests.test_channels import smtp_server  # noqa: F401 - a fixture
from tests.test_sms_channel import sms_channel

PDF = "application/pdf"


def jpeg(width=64, height=48, pad_to: int = 0) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "JPEG")
    data = out.getvalue()
    # Bytes after the end-of-image marker: a valid JPEG of any size, cheaply.
    return data + b"\0" * max(0, pad_to - len(data))


def png(width=32, height=32) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (0, 90, 200)).save(out, "PNG")
    return out.getvalue()


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (8, 8)).save(out, "GIF")
    return out.getvalue()


def ogg_opus(size: int = 4000) -> bytes:
    head = b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x13OpusHead\x01\x01" + struct.pack("<H", 312)
    return head + b"\x00" * (size - len(head))


def pdf(size: int = 2000) -> bytes:
    head = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n"
    return head + b" " * (size - len(head) - 6) + b"%%EOF\n"


def media(data: bytes, kind: str, content_type: str, url: str = "") -> Attachment:
    return Attachment(
        kind=kind, content_type=content_type, size=len(data), read=lambda: data, url=url
    )


def outbound(channel, address, text="", attachment=None, fmt="text") -> OutboundMessage:
    return OutboundMessage(
        delivery_id=5,
        patient_id=1,
        channel=channel,
        address=address,
        text=text,
        format=fmt,
        attachment=attachment,
    )


@pytest.fixture(autouse=True)
def attachment_folder(settings, tmp_path):
    """Attachments stored in a folder of this test's own."""
    folder = tmp_path / "attachments"
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder)},
        },
    }
    return folder


def stored_files(folder) -> list:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# -- The limits, checked at creation -------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "data", "kind", "problem"),
    [
        ("telegram", jpeg(pad_to=10 * MB + 1), "", "at most 10 MB"),
        ("whatsapp", jpeg(pad_to=5 * MB + 1), "", "at most 5 MB"),
        ("sms", jpeg(pad_to=5 * MB + 1), "", "at most 5 MB"),
        ("telegram", gif(), "", "must be one of: image/jpeg, image/png, image/webp"),
        ("whatsapp", gif(), "", "must be one of: image/jpeg, image/png"),
        ("telegram", b"\x00\x01 not a known format" * 10, "", "a file of unknown type"),
        ("telegram", jpeg()[:300], "", "corrupt or cut off"),
        ("telegram", jpeg(9000, 1200), "", "width + height up to 10000"),
        ("telegram", jpeg(2100, 100), "", "sides up to 20:1"),
        ("telegram", pdf(), "voice", "a voice on telegram must be one of"),
    ],
)
def test_a_file_a_channel_refuses_is_refused_naming_the_limit(channel, data, kind, problem):
    with pytest.raises(ValidationError) as raised:
        check_attachment(channel, data, kind)
    assert problem in raised.value.message_dict["attachment"][0]


def test_each_channel_takes_its_own_types():
    assert check_attachment("telegram", jpeg()).kind == "photo"
    assert check_attachment("telegram", ogg_opus()).content_type == "audio/ogg"
    assert check_attachment("whatsapp", pdf()).kind == "document"
    assert check_attachment("sms", gif()).content_type == "image/gif"
    assert check_attachment("email", pdf()).kind == "document"
    with pytest.raises(ValidationError):
        check_attachment("email", jpeg(), "document")  # a document is a PDF
    assert check_attachment("whatsapp", jpeg(pad_to=5 * MB)).size == 5 * MB


def test_a_refused_attachment_saves_no_message_and_no_file(patient, attachment_folder):
    with pytest.raises(ValidationError) as raised:
        message_schedule(
            patient=patient,
            content="Your X-ray",
            starts_at=ago(1),
            attachment=Upload(jpeg(pad_to=10 * MB + 1), "xray.jpg"),
        )

    assert "at most 10 MB" in str(raised.value)
    assert not ScheduledMessage.objects.exists() and not AttachmentRow.objects.exists()
    assert stored_files(attachment_folder) == []


def test_a_failed_row_write_takes_its_file_away(patient, attachment_folder, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(AttachmentRow, "save", fail)
    with pytest.raises(RuntimeError):
        message_schedule(
            patient=patient, content="Scan", starts_at=ago(1), attachment=Upload(png(), "scan.png")
        )

    assert not ScheduledMessage.objects.exists()
    assert stored_files(attachment_folder) == []


def test_an_attachment_is_stored_encrypted_and_read_back_whole(patient, attachment_folder):
    photo = jpeg()
    message = message_schedule(
        patient=patient, content="", starts_at=ago(1), attachment=Upload(photo, "wound-day-3.jpg")
    )

    row = message.attachment
    [stored] = stored_files(attachment_folder)
    on_disk = stored.read_bytes()
    assert on_disk.startswith(b"enc1:") and photo not in on_disk
    assert "wound" not in stored.name
    assert row.encrypted and row.size == len(photo)
    assert row.sha256 == hashlib.sha256(photo).hexdigest()
    assert attachment_bytes(row) == photo
    assert AttachmentRow.objects.get().original_name == "wound-day-3.jpg"


def test_erasing_a_patient_in_the_admin_deletes_their_files(
    client, organization, patient, attachment_folder, django_capture_on_commit_callbacks
):
    head = provider_create(organization_slug=organization.slug, username="ada-admin", admin=True)
    client.force_login(head.user)
    message_schedule(patient=patient, content="", starts_at=ago(1), attachment=Upload(jpeg()))
    message_schedule(patient=patient, content="", starts_at=ago(1), attachment=Upload(pdf()))
    assert len(stored_files(attachment_folder)) == 2

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            reverse("admin:patients_patient_delete", args=[patient.pk]), {"post": "yes"}
        )

    assert answer.status_code == 302, answer.content.decode()[-1500:]
    assert not AttachmentRow.objects.exists()
    assert stored_files(attachment_folder) == []


def test_a_deletion_rolled_back_keeps_the_file(patient, attachment_folder):
    message = message_schedule(
        patient=patient, content="", starts_at=ago(1), attachment=Upload(jpeg())
    )

    message_id = message.pk
    with pytest.raises(RuntimeError), transaction.atomic():
        message.delete()
        raise RuntimeError("the erasure failed half-way")

    assert AttachmentRow.objects.filter(message_id=message_id).exists()
    [stored] = stored_files(attachment_folder)
    assert attachment_bytes(AttachmentRow.objects.get()) == jpeg()
    assert stored.exists()


def test_an_sms_attachment_needs_a_public_address(settings, make_patient):
    patient = make_patient(chat_id=None)
    Contact.objects.create(
        patient=patient, channel=Channel.SMS, address="+12025550123", verified_at=timezone.now()
    )
    settings.PUBLIC_BASE_URL = ""

    with pytest.raises(ValidationError) as raised:
        message_schedule(
            patient=patient,
            content="Map",
            starts_at=ago(1),
            channel="sms",
            attachment=Upload(png()),
        )
    assert "PUBLIC_BASE_URL" in str(raised.value)


# -- The API -------------------------------------------------------------------------------


@pytest.fixture
def api(organization):
    provider = provider_create(
        organization_slug=organization.slug, username="alice", admin=True, new_token=True
    )
    return token_client(provider.token)


def upload(data: bytes, name: str):
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def test_the_api_takes_a_photo_by_multipart_upload(api, patient):
    answer = api.post(
        f"{API}/messages/",
        {
            "patient": patient.pk,
            "content": "Your exercise",
            "schedule": "daily at 08:00",
            "attachment": upload(jpeg(), "exercise.jpg"),
        },
        format="multipart",
    )

    assert answer.status_code == 201, answer.json()
    row = AttachmentRow.objects.get(message_id=answer.json()["id"])
    assert (row.kind, row.content_type) == ("photo", "image/jpeg")


def test_a_new_channel_that_refuses_the_file_is_refused_and_nothing_changes(api, patient):
    Contact.objects.create(
        patient=patient, channel=Channel.WHATSAPP, address="+4915112345678",
        verified_at=timezone.now(),
    )  # fmt: skip
    photo = jpeg(pad_to=6 * MB)  # Telegram takes photos up to 10 MB, WhatsApp up to 5 MB
    message = message_schedule(
        patient=patient, content="", starts_at=from_now(600), attachment=Upload(photo)
    )

    answer = api.patch(f"{API}/messages/{message.pk}/", {"channel": "whatsapp"}, format="json")

    assert answer.status_code == 400
    assert "a photo on whatsapp may have at most 5 MB" in str(answer.json())
    message.refresh_from_db()
    assert message.channel == "telegram"


def test_a_message_that_is_only_a_photo_can_be_edited(api, patient):
    message = message_schedule(
        patient=patient, content="", starts_at=from_now(600), attachment=Upload(jpeg())
    )

    answer = api.patch(f"{API}/messages/{message.pk}/", {"priority": 1}, format="json")

    assert answer.status_code == 200, answer.json()
    message.refresh_from_db()
    assert message.priority == 1


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (jpeg(pad_to=10 * MB + 1), "a photo on telegram may have at most 10 MB"),
        (b"\x7fELF" + b"\x00" * 200, "must be one of"),
        (jpeg()[:400], "corrupt or cut off"),
    ],
)
def test_the_api_refuses_a_bad_file_with_a_400_naming_the_limit(
    api, patient, attachment_folder, data, problem
):
    answer = api.post(
        f"{API}/messages/",
        {
            "patient": patient.pk,
            "content": "x",
            "schedule": "daily at 08:00",
            "attachment": upload(data, "file.jpg"),
        },
        format="multipart",
    )

    assert answer.status_code == 400
    assert problem in answer.json()["attachment"][0]
    assert not ScheduledMessage.objects.exists() and stored_files(attachment_folder) == []


# -- Telegram --------------------------------------------------------------------------------


@pytest.fixture
def telegram(fake_telegram):
    return TelegramChannel(token="123456:TEST-TOKEN", base_url=fake_telegram.base_url, timeout=5)


def test_telegram_uploads_a_photo_with_its_caption(telegram, fake_telegram):
    photo = jpeg()
    telegram.send(
        outbound(
            "telegram", "4242", "<b>Day 3</b>", media(photo, "photo", "image/jpeg"), fmt="html"
        )
    )

    [call] = fake_telegram.sent()
    assert call.method == "sendPhoto"
    assert call.params["caption"] == "<b>Day 3</b>" and call.params["parse_mode"] == "HTML"
    assert call.files["photo"].data == photo and call.files["photo"].filename == "photo.jpg"


def test_voice_notes_and_documents_go_by_their_own_methods(telegram, fake_telegram):
    voice, document = ogg_opus(), pdf()
    telegram.send(outbound("telegram", "4242", "", media(voice, "voice", "audio/ogg")))
    telegram.send(outbound("telegram", "4242", "Leaflet", media(document, "document", PDF)))

    calls = fake_telegram.sent()
    assert [c.method for c in calls] == ["sendVoice", "sendDocument"]
    assert calls[0].files["voice"].data == voice and "caption" not in calls[0].params
    assert calls[1].files["document"].data == document
    assert calls[1].files["document"].filename == "document.pdf"


def test_a_text_longer_than_a_caption_follows_the_photo_in_order(telegram, fake_telegram):
    text = "word " * 300  # 1,500 characters: over the 1,024 of a caption
    message = outbound("telegram", "4242", text, media(jpeg(), "photo", "image/jpeg"))

    parts = telegram.parts(message)
    for part in parts:
        telegram.send(part)

    calls = fake_telegram.sent()
    assert [c.method for c in calls] == ["sendPhoto", "sendMessage"]
    assert "caption" not in calls[0].params and calls[1].params["text"] == text.strip()
    assert len(text) > CAPTION_LENGTH["telegram"]["photo"]


def send_photo_directly(fake_telegram, data: bytes, **fields):
    """A sendPhoto that no adapter would make, straight to the fake."""
    url = f"{fake_telegram.base_url}/bot123456:TEST-TOKEN/sendPhoto"
    files = {"photo": ("photo.jpg", data, "image/jpeg")}
    return requests.post(url, data={"chat_id": "1", **fields}, files=files, timeout=10).json()


def test_the_fake_telegram_refuses_what_telegram_refuses(telegram, fake_telegram):
    answer = send_photo_directly(fake_telegram, jpeg(), caption="x" * 1025)
    assert answer["description"] == "Bad Request: message caption is too long"
    assert send_photo_directly(fake_telegram, jpeg(), caption="x" * 1024)["ok"]
    big = jpeg(pad_to=10 * MB + 10)
    with pytest.raises(PermanentError, match="(?i)file is too big"):
        telegram.send(outbound("telegram", "1", "", media(big, "photo", "image/jpeg")))
    with pytest.raises(PermanentError, match="(?i)image_process_failed"):
        telegram.send(outbound("telegram", "1", "", media(jpeg()[:200], "photo", "image/jpeg")))
    with pytest.raises(PermanentError, match="(?i)voice file"):
        telegram.send(outbound("telegram", "1", "", media(pdf(), "voice", "audio/ogg")))


def test_the_fake_telegram_refuses_an_upload_over_50_mb(telegram, fake_telegram):
    with pytest.raises(PermanentError):
        telegram.send(outbound("telegram", "1", "", media(pdf(50 * MB + 1), "document", PDF)))
    assert fake_telegram.calls("sendDocument")[0].status == 413


# -- Delivery: the media is a part of its own --------------------------------------------------


def photo_delivery(patient, text: str) -> Delivery:
    message_schedule(
        patient=patient, content=text, starts_at=ago(1), attachment=Upload(jpeg(), "p.jpg")
    )
    dispatch_due()
    return Delivery.objects.select_related("contact").get()


def test_a_photo_retried_after_a_429_is_delivered_once(fake_telegram, patient):
    fake_telegram.configure(per_chat_per_second=1)
    text = "Long instructions. " * 80  # over a caption: a text part after the photo
    delivery = photo_delivery(patient, text)
    chat = delivery.contact.address
    fake_telegram.push(Reply(), Reply.too_many_requests(1), chat_id=chat)

    assert deliver(delivery.pk).status == DeliveryStatus.QUEUED
    delivery.refresh_from_db()
    assert delivery.parts_sent == 1
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert deliver(delivery.pk).status == DeliveryStatus.SENT

    sent = fake_telegram.sent(chat)
    assert [c.method for c in sent] == ["sendPhoto", "sendMessage"]  # the photo once
    assert [c.status for c in fake_telegram.calls("sendPhoto")] == [200]
    assert sent[1].params["text"] == text.strip()
    delivery.refresh_from_db()
    assert delivery.parts_sent == 2 and len(delivery.provider_message_id.split(",")) == 2
    outcomes = list(delivery.attempt_log.order_by("number").values_list("outcome", flat=True))
    assert outcomes == [AttemptOutcome.TRANSIENT, AttemptOutcome.SENT]


def test_a_short_text_goes_as_the_photos_caption_in_one_send(fake_telegram, patient):
    delivery = photo_delivery(patient, "Keep the dressing dry")

    assert deliver(delivery.pk).status == DeliveryStatus.SENT

    [call] = fake_telegram.sent()
    assert call.method == "sendPhoto" and call.params["caption"] == "Keep the dressing dry"


# -- WhatsApp ----------------------------------------------------------------------------------


@pytest.fixture
def fake_whatsapp():
    fake = FakeWhatsApp().start()
    yield fake
    fake.stop()


@pytest.fixture
def whatsapp(fake_whatsapp):
    return WhatsAppChannel(
        token="t", phone_number_id="106", base_url=fake_whatsapp.base_url, timeout=5
    )


def test_whatsapp_uploads_the_image_then_sends_it_by_id_with_its_caption(whatsapp, fake_whatsapp):
    photo = png()
    whatsapp.send(
        outbound("whatsapp", "+4915112345678", "Day 3", media(photo, "photo", "image/png"))
    )

    [upload_call] = [c for c in fake_whatsapp.sent() if c.endpoint == "media"]
    assert upload_call.params == {"messaging_product": "whatsapp", "type": "image/png"}
    [message_call] = fake_whatsapp.messages_sent()
    image = message_call.params["image"]
    assert message_call.params["type"] == "image" and image["caption"] == "Day 3"
    assert fake_whatsapp.media()[image["id"]].data == photo


def test_a_whatsapp_voice_note_has_no_caption_and_its_text_follows(whatsapp, fake_whatsapp):
    message = outbound(
        "whatsapp", "+4915112345678", "Listen to this", media(ogg_opus(), "voice", "audio/ogg")
    )
    for part in whatsapp.parts(message):
        whatsapp.send(part)

    calls = fake_whatsapp.messages_sent()
    assert [c.params["type"] for c in calls] == ["audio", "text"]
    assert "caption" not in calls[0].params["audio"]
    assert calls[1].params["text"]["body"] == "Listen to this"


def test_the_fake_whatsapp_refuses_types_and_sizes_meta_refuses(whatsapp, fake_whatsapp):
    with pytest.raises(PermanentError) as raised:
        whatsapp.send(outbound("whatsapp", "+491511", "", media(gif(), "photo", "image/gif")))
    assert raised.value.code == "whatsapp_131053"
    with pytest.raises(PermanentError):
        whatsapp.send(
            outbound(
                "whatsapp", "+491511", "", media(jpeg(pad_to=5 * MB + 1), "photo", "image/jpeg")
            )
        )
    assert fake_whatsapp.messages_sent() == []


# -- Twilio MMS --------------------------------------------------------------------------------


@pytest.fixture
def fake_twilio():
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


LINK = "https://companion.example.org/media/signed-token/"


def test_mms_goes_to_a_us_number_with_the_media_address(fake_twilio):
    channel = sms_channel(fake_twilio)
    channel.send(
        outbound("sms", "+12025550123", "Your map", media(png(), "photo", "image/png", url=LINK))
    )

    [call] = fake_twilio.sent()
    assert call.params["MediaUrl"] == LINK and call.params["Body"] == "Your map"


def test_elsewhere_the_sms_carries_a_link_instead(fake_twilio):
    channel = sms_channel(fake_twilio)
    channel.send(
        outbound("sms", "+4915112345678", "Your map", media(png(), "photo", "image/png", url=LINK))
    )
    channel.send(
        outbound("sms", "+18765550123", "Jamaica", media(png(), "photo", "image/png", url=LINK))
    )

    calls = fake_twilio.sent()
    assert all("MediaUrl" not in c.params for c in calls)
    assert calls[0].params["Body"] == f"Your map\n\n{LINK}"


def test_the_fake_twilio_refuses_mms_outside_the_us_and_canada(fake_twilio):
    url = f"{fake_twilio.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    form = {"To": "+4915112345678", "From": "+15005550006", "Body": "x", "MediaUrl": LINK}
    answer = requests.post(url, data=form, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert answer.status_code == 400 and answer.json()["code"] == 21612


def test_an_sms_attachment_without_an_address_is_a_clear_refusal(fake_twilio):
    with pytest.raises(PermanentError) as raised:
        sms_channel(fake_twilio).send(
            outbound("sms", "+12025550123", "x", media(png(), "photo", "image/png"))
        )
    assert raised.value.code == "mms_unavailable" and fake_twilio.calls() == []


class _SignedLongAgo(signing.TimestampSigner):
    def timestamp(self) -> str:
        return signing.b62_encode(int(time.time()) - 72 * 3600 - 60)


def test_the_signed_address_serves_the_file_until_it_expires(client, settings, patient):
    settings.PUBLIC_BASE_URL = "https://companion.example.org"
    photo = png()
    message = message_schedule(
        patient=patient, content="", starts_at=ago(1), attachment=Upload(photo)
    )
    path = attachment_link(message.attachment).removeprefix(settings.PUBLIC_BASE_URL)

    answer = client.get(path)
    assert answer.status_code == 200 and answer.content == photo
    assert answer["Content-Type"] == "image/png" and answer["Cache-Control"] == "private, no-store"
    token = path.rstrip("/").rsplit("/", 1)[1]
    assert client.get(path.replace(token, token[:-2] + "xx")).status_code == 404
    old = _SignedLongAgo(salt="scheduling.attachment-link").sign(str(message.attachment.pk))
    assert client.get(reverse("attachment-link", args=[old])).status_code == 404


# -- E-mail and the web inbox --------------------------------------------------------------------


def test_an_email_carries_the_file_under_a_neutral_name(smtp_server):  # noqa: F811
    document = pdf()
    EmailChannel().send(
        outbound("email", "pat@example.org", "Your leaflet", media(document, "document", PDF))
    )

    mail = message_from_bytes(smtp_server.envelopes[0].content)
    [attached] = [p for p in mail.walk() if p.get_filename()]
    assert attached.get_filename() == "document.pdf"
    assert attached.get_content_type() == PDF and attached.get_payload(decode=True) == document


def test_the_web_inbox_shows_the_photo_through_the_patients_link(client, make_patient):
    patient = make_patient(chat_id=None)
    photo = png()
    message_schedule(patient=patient, content="Look", starts_at=ago(1), attachment=Upload(photo))
    dispatch_due()
    assert deliver(Delivery.objects.get().pk).status == DeliveryStatus.SENT
    item = InboxMessage.objects.get()
    path = inbox_link_issue(patient=patient).path
    file_path = reverse("inbox-attachment", args=[path.split("/")[2], item.pk])

    page = client.get(path)
    assert page.status_code == 200 and f'<img src="{file_path}"'.encode() in page.content
    answer = client.get(file_path)
    assert answer.status_code == 200 and answer.content == photo
    assert answer["Cache-Control"] == "private, no-store"
    other = make_patient(chat_id=None)
    other_path = inbox_link_issue(patient=other).path
    stranger = reverse("inbox-attachment", args=[other_path.split("/")[2], item.pk])
    assert client.get(stranger).status_code == 404


# -- The admin and the web UI ------------------------------------------------------------------


def test_the_admin_adds_a_message_with_a_photo(demo_client, patient):
    from tests.test_admin_and_pages import admin_add_form

    photo = jpeg()
    form = admin_add_form(patient, attachment=upload(photo, "rash.jpg"))
    answer = demo_client.post(reverse("admin:scheduling_scheduledmessage_add"), form)

    assert answer.status_code == 302, answer.content.decode()[-1500:]
    row = AttachmentRow.objects.get(message__patient=patient)
    assert attachment_bytes(row) == photo and row.kind == "photo"


def test_the_admin_form_names_the_limit_and_saves_nothing(demo_client, patient, attachment_folder):
    from tests.test_admin_and_pages import admin_add_form

    form = admin_add_form(patient, attachment=upload(jpeg(pad_to=10 * MB + 1), "big.jpg"))
    answer = demo_client.post(reverse("admin:scheduling_scheduledmessage_add"), form)

    assert answer.status_code == 200
    assert "a photo on telegram may have at most 10 MB" in answer.content.decode()
    assert not ScheduledMessage.objects.filter(patient=patient).exists()
    assert stored_files(attachment_folder) == []


def test_the_web_ui_schedules_a_voice_note(client, organization, patient):
    from tests.test_web_ui import CREATE, create_form, provider_in

    client.force_login(provider_in(organization, "nurse-v"))
    voice = ogg_opus()
    form = create_form(patient, when="daily at 08:00", attachment=upload(voice, "v.ogg"))
    answer = client.post(CREATE, form)

    assert answer.status_code == 302, answer.content.decode()[-1500:]
    row = AttachmentRow.objects.get()
    assert row.kind == "voice" and attachment_bytes(row) == voice


def test_the_web_ui_shows_the_limit_next_to_the_file(client, organization, patient):
    from tests.test_web_ui import CREATE, create_form, field_errors, provider_in

    client.force_login(provider_in(organization, "nurse-w"))
    form = create_form(
        patient, content="x", when="daily at 08:00", attachment=upload(jpeg()[:300], "cut.jpg")
    )
    answer = client.post(CREATE, form)

    assert answer.status_code == 200
    assert "corrupt or cut off" in field_errors(answer, "attachment")
    assert not ScheduledMessage.objects.exists()


def test_another_clinics_attachments_are_behind_the_wall(patient, make_patient):
    from django.db import connection

    from patients.models import Organization
    from patients.tenant_wall import wall_down, wall_up

    message_schedule(patient=patient, content="", starts_at=ago(1), attachment=Upload(png()))
    other = Organization.objects.create(name="Clinic B", slug="clinic-b")
    try:
        wall_up([other.pk])
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM scheduling_attachment")
            assert cursor.fetchone()[0] == 0
        wall_up([patient.organization_id])
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM scheduling_attachment")
            assert cursor.fetchone()[0] == 1
    finally:
        wall_down()


def test_key_rotation_rewrites_attachment_files_with_the_new_key(
    patient, settings, attachment_folder
):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    photo, document = png(), pdf()
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    encrypted = message_schedule(
        patient=patient, content="", starts_at=ago(1), attachment=Upload(photo)
    )
    settings.FIELD_ENCRYPTION_ENABLED = False  # a file stored before encryption was on
    plain = message_schedule(
        patient=patient, content="", starts_at=ago(1), attachment=Upload(document)
    )
    settings.FIELD_ENCRYPTION_ENABLED = True
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]

    out = io.StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "attachments: 2 re-encrypted, 0 already" in out.getvalue()
    assert len(stored_files(attachment_folder)) == 2  # the old files are gone

    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    assert attachment_bytes(AttachmentRow.objects.get(message=encrypted)) == photo
    rewritten = AttachmentRow.objects.get(message=plain)
    assert rewritten.encrypted and attachment_bytes(rewritten) == document
    again = io.StringIO()
    call_command("rotate_attachment_key", stdout=again)
    assert "attachments: 0 re-encrypted, 2 already" in again.getvalue()


def test_an_sms_text_with_an_attachment_leaves_room_for_its_link(settings, make_patient):
    settings.PUBLIC_BASE_URL = "https://companion.example.org"
    patient = make_patient(chat_id=None)
    Contact.objects.create(
        patient=patient, channel=Channel.SMS, address="+4915112345678", verified_at=timezone.now()
    )
    options = {"patient": patient, "starts_at": ago(1), "channel": "sms"}

    with pytest.raises(ValidationError) as raised:
        message_schedule(content="x" * 1401, attachment=Upload(png()), **options)
    assert "at most 1400 characters" in raised.value.message_dict["content"][0]
    assert message_schedule(content="x" * 1400, attachment=Upload(png()), **options).pk
