"""Provider status callbacks: Twilio POSTs a signed form to the StatusCallback URL at each
step of an SMS (queued, sending, sent, then delivered, undelivered or failed); what it
means for the delivery is scheduling.provider_status's to say.

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
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from conversations.webhook_limits import limited_per_address
from scheduling.provider_status import STATUS_RANK, record_twilio_status

logger = logging.getLogger(__name__)


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    signed = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@csrf_exempt
@require_POST
@limited_per_address("twilio-status")
def twilio_status(request: HttpRequest) -> HttpResponse:
    if not signed_by_twilio(request):
        logger.warning("twilio status callback refused: bad or missing signature")
        return HttpResponseForbidden()
    sid = request.POST.get("MessageSid", "")
    status = request.POST.get("MessageStatus", "")
    if sid and status in STATUS_RANK:
        record_twilio_status(sid, status, request.POST.get("ErrorCode", ""))
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
