"""Webhooks for what patients send: Telegram updates, WhatsApp messages, SMS.

Each checks the provider's signature first (403 otherwise) and leaves the work to
conversations.inbound. Telegram and WhatsApp get 200 at once and their updates are
processed by a Celery task; Twilio gets its reply as TwiML.
"""

import json
import logging

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from conversations import inbound
from conversations.callbacks import signed_by_twilio
from conversations.webhook_limits import limited_per_address
from patients.models import Channel

logger = logging.getLogger(__name__)


# Telegram's updates and Meta's webhooks nest a few levels; a body nested deeper is not
# theirs, and walking it (json's parser, then storing it) would exhaust Python's stack.
MAX_NESTING = 32


def _json(request: HttpRequest) -> object:
    """The body as JSON, or None when it is not JSON or nests deeper than MAX_NESTING."""
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return payload if _nesting(payload) <= MAX_NESTING else None


def _nesting(value: object) -> int:
    deepest, pending = 0, [(value, 1)]  # a loop, not recursion, for the same reason
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return deepest


@csrf_exempt
@require_POST
@limited_per_address("telegram")
def telegram_webhook(request: HttpRequest) -> HttpResponse:
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not inbound.telegram_secret_valid(given):
        logger.warning("telegram webhook refused: wrong or missing secret token")
        return HttpResponseForbidden()
    payload = _json(request)
    update_id = inbound.telegram_update_id(payload)
    if update_id is None:
        return HttpResponseBadRequest("not a Telegram update")
    inbound.inbound_receive(channel=Channel.TELEGRAM, external_id=str(update_id), payload=payload)
    return HttpResponse(status=200)


@csrf_exempt
@require_http_methods(["GET", "POST"])
@limited_per_address("whatsapp")
def whatsapp_inbound(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        # Meta's one-time check when the webhook is subscribed.
        params = request.GET
        if params.get("hub.mode") == "subscribe" and inbound.whatsapp_verify_token_valid(
            params.get("hub.verify_token", "")
        ):
            return HttpResponse(params.get("hub.challenge", ""), content_type="text/plain")
        return HttpResponseForbidden()
    if not inbound.whatsapp_signature_valid(
        request.body, request.headers.get("X-Hub-Signature-256", "")
    ):
        logger.warning("whatsapp webhook refused: bad or missing signature")
        return HttpResponseForbidden()
    payload = _json(request)
    if payload is None:
        return HttpResponseBadRequest("not a WhatsApp webhook body")
    for message_id, message in inbound.whatsapp_messages(payload):
        inbound.inbound_receive(channel=Channel.WHATSAPP, external_id=message_id, payload=message)
    # 200 for statuses and anything we skip too, or Meta would keep sending them.
    return HttpResponse(status=200)


@csrf_exempt
@require_POST
@limited_per_address("twilio")
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    if not signed_by_twilio(request):
        logger.warning("twilio inbound refused: bad or missing signature")
        return HttpResponseForbidden()
    message_sid = request.POST.get("MessageSid", "")
    if not message_sid:
        return HttpResponseBadRequest("no MessageSid")
    reply = inbound.sms_receive(message_sid=message_sid, sender=request.POST.get("From", ""),
                                body=request.POST.get("Body", ""))  # fmt: skip
    return HttpResponse(inbound.twiml(reply), content_type="text/xml")
