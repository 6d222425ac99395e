"""The API's documentation pages, Swagger UI and Redoc: for logged-in users only, and
served from this site (drf-spectacular-sidecar), so they work in a clinic network without
internet access and run no third party's script on this origin (docs/security.md, 16).

Swagger UI's start-up script is a file of its own (drf-spectacular's split view), as the
Content-Security-Policy allows scripts from this site's files only. Redoc's renderer
writes its styles into the page as it runs: its page alone allows inline styles, never
inline scripts, and a worker from a blob: URL for its search.
"""

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib.auth.decorators import login_required
from django.urls import reverse_lazy
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView

# The web UI's login, which care teams use (the admin's takes staff only).
provider_required = login_required(login_url=reverse_lazy("scheduled_messages:login"))


class SwaggerDocsView(SpectacularSwaggerSplitView):
    template_name = "care_team/api/swagger_ui.html"


class RedocDocsView(SpectacularRedocView):
    template_name = "care_team/api/redoc.html"


swagger_docs = provider_required(SwaggerDocsView.as_view(url_name="api-schema"))
redoc_docs = provider_required(
    csp_update({"style-src": [UNSAFE_INLINE], "worker-src": ["blob:"]})(
        RedocDocsView.as_view(url_name="api-schema")
    )
)
