from django.http import Http404, HttpRequest, HttpResponse, JsonResponse

from operations import metrics_exposition


def liveness(request: HttpRequest) -> JsonResponse:
    """The process answers; Kubernetes' liveness probe. Readiness comes with the health API."""
    return JsonResponse({"status": "ok"})


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' scrape of the web process, with METRICS_TOKEN as a bearer token."""
    allowed = metrics_exposition.scrape_allowed(request.headers.get("Authorization", ""))
    if allowed is None:
        raise Http404("no METRICS_TOKEN is set")
    if not allowed:
        response = HttpResponse(
            "a bearer token (METRICS_TOKEN) is required\n", status=403, content_type="text/plain"
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    body, content_type = metrics_exposition.render()
    return HttpResponse(body, content_type=content_type)
