"""Provider status callbacks: what became of a message after the provider accepted it.

Twilio POSTs a signed form to the StatusCallback URL at each step of an SMS (queued,
sending, sent, then delivered, undelivered or failed). The delivery's own status (sent)
stays as it is: it says what we did; `provider_status` says what the provider saw after.
Callbacks may come in any order and at once, so the status only moves forward, in one
conditional UPDATE. Statuses Twilio uses for other channels (read, received, ...) are
ignored.

The signature is checked as Twilio documents it: base64 of HMAC-SHA1, keyed with the auth
token, over the URL Twilio called followed by each POST parameter's name and value,
sorted by name. Twilio's own validator also accepts the URL with or without the default
port; this one takes the URL exactly, so PUBLIC_BASE_URL must be what Twilio calls.
"""

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from patients.models import Channel
from scheduling.models import Delivery

logger = logging.getLogger(__name__)

# Twilio's message statuses by how far the message got; a final one is never replaced.
STATUS_RANK = {
    "queued": 0, "accepted": 0, "scheduled": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3, "undelivered": 3, "failed": 3, "canceled": 3,
}  # fmt: skip
FAILED_STATUSES = frozenset({"undelivered", "failed"})


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    signed = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    if not signed_by_twilio(request):
        logger.warning("twilio status callback refused: bad or missing signature")
        return HttpResponseForbidden()
    sid = request.POST.get("MessageSid", "")
    status = request.POST.get("MessageStatus", "")
    if sid and status in STATUS_RANK:
        _record_provider_status(sid, status, request.POST.get("ErrorCode", ""))
    # 200 also for a sid we do not know, or Twilio would keep calling.
    return HttpResponse(status=200)


def signed_by_twilio(request: HttpRequest) -> bool:
    token = settings.TWILIO_AUTH_TOKEN
    given = request.headers.get("X-Twilio-Signature", "")
    if not token or not given:
        return False
    # Behind a proxy the address Twilio called is not the one Django sees.
    if settings.PUBLIC_BASE_URL:
        url = settings.PUBLIC_BASE_URL + request.get_full_path()
    else:
        url = request.build_absolute_uri()
    params = [(name, value) for name, values in request.POST.lists() for value in values]
    expected = twilio_signature(token, url, params)
    return hmac.compare_digest(expected.encode(), given.encode())


def _record_provider_status(sid: str, status: str, error_code: str) -> None:
    now = timezone.now()
    earlier = [name for name, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
    changes: dict[str, object] = {
        "provider_status": status, "provider_status_at": now, "updated_at": now
    }  # fmt: skip
    if status in FAILED_STATUSES:
        code = error_code if error_code.isascii() and error_code.isdigit() else "unknown"
        changes["error_code"] = f"twilio_{code}"[:64]
        changes["error_text"] = f"Twilio reported the SMS {status} (error {code})."
    # The filter on the earlier statuses makes a late or concurrent callback a no-op.
    moved = Delivery.objects.filter(
        provider_message_id=sid, channel=Channel.SMS, provider_status__in=["", *earlier]
    ).update(**changes)
    logger.info("twilio status %s for message %s: %d delivery moved", status, sid, moved)
