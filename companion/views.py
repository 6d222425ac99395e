from django.http import HttpRequest, JsonResponse


def liveness(request: HttpRequest) -> JsonResponse:
    """The process answers; Kubernetes' liveness probe. Readiness comes with the health API."""
    return JsonResponse({"status": "ok"})
