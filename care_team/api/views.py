"""The API's endpoints. Each reads its input with a serializer, calls one function of
`operations` (or a scheduling service) and answers; querysets are always scoped, so
another organization's object is a 404 and never listed."""

import base64

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from care_team.api import operations
from care_team.api.filters import MessageFilter, StableOrderingFilter
from care_team.api.framework import (
    AdminsDelete,
    AuditActorMixin,
    MembersWrite,
    Pagination,
    StrictJSONParser,
    StrictMultiPartParser,
)
from care_team.api.health import health_answer
from care_team.api.outreach_serializers import (
    CheckInPlanSerializer,
    CheckInSerializer,
    FollowUpRequestSerializer,
    FollowUpSerializer,
    FollowUpSettingsSerializer,
)
from care_team.api.serializers import (
    BulkEnvelopeSerializer,
    BulkErrorSerializer,
    BulkRequestSerializer,
    BulkResultSerializer,
    ContactSerializer,
    DeliverySerializer,
    HealthSerializer,
    MessageCreateSerializer,
    MessageDetailSerializer,
    MessageDraftSerializer,
    MessageSerializer,
    MessageUpdateSerializer,
    OccurrenceSerializer,
    PatientSerializer,
    PreviewQuerySerializer,
    PreviewSerializer,
    RetryResultSerializer,
    TelegramLinkSerializer,
    TemplateSerializer,
)
from care_team.api.throttles import HealthThrottle
from outreach.follow_ups import follow_up_schedule, set_follow_ups, state_for
from outreach.models import CheckInPlan
from outreach.plans import plan_check_ins_for
from patients.access import is_operator, organization_ids, scoped
from patients.audit import record_action
from patients.contacts import contact_confirm
from patients.linking import link_qr_png, link_qr_svg, link_token_create
from patients.models import Patient
from patients.tenant_wall import wall_is_up, wall_up
from scheduling.services import message_send_now

CONFIRM_CONTACT_PATH = r"contacts/(?P<contact_id>[0-9]{1,18})/confirm"


class ScopedViewSet(AuditActorMixin, viewsets.ModelViewSet):
    """List, create, retrieve, update and destroy, with the actor set for the audit trail;
    each subclass scopes its queryset to the user's organizations."""

    permission_classes = [MembersWrite]
    pagination_class = Pagination

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # The token is read only now, after the middleware: the database's wall follows
        # (a session's user already has it, from care_team.tenancy).
        if request.user.is_authenticated and not wall_is_up():
            wall_up(organization_ids(request.user))


PATIENT_CHANGE = (
    "A `contacts` list replaces the patient's contacts: a contact it leaves out is removed, "
    "which only an admin of the organization may do; for staff that is a 403 naming the "
    "contacts left out, and nothing is saved."
)


@extend_schema_view(
    update=extend_schema(summary="Change a patient", description=PATIENT_CHANGE),
    partial_update=extend_schema(summary="Change a patient", description=PATIENT_CHANGE),
    destroy=extend_schema(
        summary="Deactivate a patient (admins only)",
        description="The patient gets no more messages (as if opted out) and their pending "
        "messages are cancelled; the patient and their history are kept.",
    ),
)
class PatientViewSet(ScopedViewSet):
    serializer_class = PatientSerializer
    permission_classes = [MembersWrite, AdminsDelete]

    def get_queryset(self):
        patients = Patient.objects.select_related("organization").prefetch_related("contacts")
        return scoped(patients, self.request.user)

    def perform_destroy(self, instance: Patient) -> None:
        operations.patient_deactivate(instance, actor=self.request.user)

    @extend_schema(
        summary="Create the patient's Telegram link",
        description="A one-time link (and its QR code) that connects the patient's Telegram "
        "chat when they open it; it expires after LINK_TOKEN_TTL_HOURS, and a newer link "
        "makes older ones stop working. The token is shown only in this answer.",
        request=None,
        responses={201: TelegramLinkSerializer},
    )
    @action(detail=True, methods=["post"], url_path="telegram-link")
    def telegram_link(self, request, pk=None):
        link = link_token_create(patient=self.get_object(), actor=request.user)
        qr_target = link.url or link.token  # without a bot username, the token to type
        body = {
            "token": link.token,
            "url": link.url,
            "expires_at": link.expires_at,
            "qr_svg": link_qr_svg(qr_target),
            "qr_png": base64.b64encode(link_qr_png(qr_target)).decode(),
        }
        return Response(TelegramLinkSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Confirm one of the patient's contacts",
        description="Someone in the care team checked with the patient that the address is "
        "theirs. The contact becomes verified, recorded with who confirmed it and when (also "
        "in the audit trail). Messages go only to verified contacts; Telegram chats are "
        "verified by the patient opening their Telegram link instead.",
        parameters=[OpenApiParameter("contact_id", int, OpenApiParameter.PATH)],
        request=None,
        responses={200: ContactSerializer},
    )
    @action(detail=True, methods=["post"], url_path=CONFIRM_CONTACT_PATH)
    def confirm_contact(self, request, pk=None, contact_id=None):
        contact = get_object_or_404(self.get_object().contacts, pk=int(contact_id))
        contact_confirm(contact, actor=request.user)
        return Response(ContactSerializer(contact).data)

    @extend_schema(
        methods=["GET"],
        summary="The patient's follow-ups",
        responses={200: FollowUpSerializer(many=True)},
    )
    @extend_schema(
        methods=["POST"],
        summary="Plan a follow-up",
        description="The companion writes to the patient at that time (the language model, "
        "or the follow_up template), past the weekly cap and the cooldown, but never to a "
        "patient who opted out of follow-ups or of all messages.",
        request=FollowUpRequestSerializer,
        responses={201: FollowUpSerializer},
    )
    @action(detail=True, methods=["get", "post"], url_path="follow-ups")
    def follow_ups(self, request, pk=None):
        patient = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(patient.follow_up_log.order_by("-due_at", "-id"))
            return self.get_paginated_response(FollowUpSerializer(page, many=True).data)
        asked = FollowUpRequestSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        try:
            follow_up = follow_up_schedule(
                patient, at=asked.validated_data["at"], actor=request.user
            )
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from exc
        return Response(FollowUpSerializer(follow_up).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        methods=["GET"],
        summary="The patient's daily check-in",
        responses={200: CheckInPlanSerializer},
    )
    @extend_schema(
        methods=["PUT"],
        summary="Set the patient's daily check-in",
        description="Fields not given keep their values (a new plan starts from the "
        "defaults: on, 09:00, ±30 minutes, no place). The next check-in moment follows.",
        request=CheckInPlanSerializer,
        responses={200: CheckInPlanSerializer},
    )
    @action(detail=True, methods=["get", "put"], url_path="check-in-plan")
    def check_in_plan(self, request, pk=None):
        patient = self.get_object()
        plan = CheckInPlan.objects.filter(patient=patient).first()
        if request.method == "GET":
            if plan is None:
                raise NotFound("The patient has no daily check-in.")
            return Response(CheckInPlanSerializer(plan).data)
        wanted = CheckInPlanSerializer(plan, data=request.data, partial=True)
        wanted.is_valid(raise_exception=True)
        try:
            plan = plan_check_ins_for(patient, **wanted.validated_data)
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from exc
        record_action(patient, "check_in_plan_changed", actor=request.user)
        return Response(CheckInPlanSerializer(plan).data)

    @extend_schema(summary="The patient's check-ins", responses={200: CheckInSerializer(many=True)})
    @action(detail=True, methods=["get"], url_path="check-ins")
    def check_ins(self, request, pk=None):
        patient = self.get_object()
        page = self.paginate_queryset(patient.check_ins.order_by("-local_date", "-id"))
        return self.get_paginated_response(CheckInSerializer(page, many=True).data)

    @extend_schema(
        methods=["GET"],
        summary="The patient's follow-up switch",
        responses={200: FollowUpSettingsSerializer},
    )
    @extend_schema(
        methods=["PUT"],
        summary="Switch the patient's follow-ups on or off",
        request=FollowUpSettingsSerializer,
        responses={200: FollowUpSettingsSerializer},
    )
    @action(detail=True, methods=["get", "put"], url_path="follow-up-settings")
    def follow_up_settings(self, request, pk=None):
        patient = self.get_object()
        if request.method == "PUT":
            wanted = FollowUpSettingsSerializer(data=request.data)
            wanted.is_valid(raise_exception=True)
            set_follow_ups(patient, enabled=wanted.validated_data["enabled"])
            record_action(
                patient,
                "follow_ups_" + ("on" if wanted.validated_data["enabled"] else "off"),
                actor=request.user,
            )
        return Response({"enabled": state_for(patient).enabled})


@extend_schema_view(
    list=extend_schema(summary="List messages"),
    create=extend_schema(
        summary="Schedule a message",
        request=MessageCreateSerializer,
        responses={201: MessageDetailSerializer},
    ),
    retrieve=extend_schema(summary="A message with its latest deliveries and their attempts"),
    update=extend_schema(
        summary="Change a pending message",
        description="Allowed while the message is active or paused, and for a one-time "
        "message only until its delivery exists. Fields not given keep their values.",
        request=MessageUpdateSerializer,
        responses={200: MessageDetailSerializer},
    ),
    partial_update=extend_schema(
        summary="Change a pending message",
        request=MessageUpdateSerializer,
        responses={200: MessageDetailSerializer},
    ),
    destroy=extend_schema(summary="Cancel a message", responses={204: None}),
)
class MessageViewSet(ScopedViewSet):
    # JSON, or multipart/form-data for a message with an attachment.
    parser_classes = [StrictJSONParser, StrictMultiPartParser]
    filter_backends = [DjangoFilterBackend, StableOrderingFilter]
    filterset_class = MessageFilter
    ordering_fields = ["next_run_at", "created_at", "priority"]
    ordering = ["-created_at", "-id"]

    serializers = {
        "list": MessageSerializer,
        "retrieve": MessageDetailSerializer,
        "create": MessageCreateSerializer,
        "update": MessageUpdateSerializer,
        "partial_update": MessageUpdateSerializer,
        "preview_draft": MessageDraftSerializer,
        "bulk": BulkEnvelopeSerializer,
    }

    def get_serializer_class(self):
        return self.serializers.get(self.action, MessageDetailSerializer)

    def get_queryset(self):
        if self.action == "retrieve":
            return operations.message_details(self.request.user)
        return operations.visible_messages(self.request.user)

    def filter_queryset(self, queryset):
        # Filters and ordering are the list's; an action on one message ignores them.
        return super().filter_queryset(queryset) if self.action == "list" else queryset

    def _detail(self, message) -> dict:
        fresh = get_object_or_404(operations.message_details(self.request.user), pk=message.pk)
        return MessageDetailSerializer(fresh, context=self.get_serializer_context()).data

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = serializer.save()
        return Response(self._detail(message), status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        message = self.get_object()
        serializer = self.get_serializer(message, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        return Response(self._detail(serializer.save()))

    def perform_destroy(self, instance) -> None:
        operations.message_cancel_by(instance, actor=self.request.user)

    @extend_schema(
        summary="Cancel a message",
        request=None,
        responses={200: MessageDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        message = operations.message_cancel_by(self.get_object(), actor=request.user)
        return Response(self._detail(message))

    @extend_schema(
        summary="Send a message now, outside its schedule",
        description="One delivery now. A pending one-time message is thereby sent and "
        "completes; a recurring one keeps its schedule.",
        request=None,
        responses={
            202: DeliverySerializer,
            400: OpenApiResponse(description="Cancelled message, or the patient opted out."),
        },
    )
    @action(detail=True, methods=["post"], url_path="send-now")
    def send_now(self, request, pk=None):
        delivery = message_send_now(self.get_object(), actor=request.user)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Retry the message's failed and expired deliveries",
        request=None,
        responses={200: RetryResultSerializer},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        retried = operations.message_retry_failed(self.get_object(), user=request.user)
        return Response({"retried": retried})

    @extend_schema(
        summary="The message's next occurrences",
        parameters=[PreviewQuerySerializer],
        responses={200: PreviewSerializer},
    )
    @action(detail=True, methods=["get"])
    def preview(self, request, pk=None):
        message = self.get_object()
        query = PreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = operations.message_upcoming(message, count=query.validated_data["count"])
        return Response(_preview(message.zone_name, rows))

    @extend_schema(
        summary="Preview a draft's occurrences without saving it",
        request=MessageDraftSerializer,
        responses={200: PreviewSerializer},
    )
    @action(detail=False, methods=["post"], url_path="preview", url_name="preview-draft")
    def preview_draft(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        zone, rows = operations.draft_upcoming(
            serializer.validated_data, count=serializer.validated_data["count"]
        )
        return Response(_preview(zone, rows))

    @extend_schema(
        summary="Create or cancel many messages, all or nothing",
        request=BulkRequestSerializer,
        responses={200: BulkResultSerializer, 400: BulkErrorSerializer},
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        envelope = self.get_serializer(data=request.data)
        envelope.is_valid(raise_exception=True)
        creates, create_errors = envelope.checked_creates()
        cancels, cancel_errors = envelope.checked_cancels()
        outcome = operations.messages_bulk(
            create=creates,
            cancel=cancels,
            errors=create_errors + cancel_errors,
            actor=request.user,
        )
        if outcome.errors:
            return Response({"errors": outcome.errors}, status=status.HTTP_400_BAD_REQUEST)
        created = MessageSerializer(outcome.created, many=True).data
        return Response({"created": created, "cancelled": outcome.cancelled})


def _preview(zone: str, rows) -> dict:
    return {"timezone": zone, "occurrences": OccurrenceSerializer(rows, many=True).data}


@extend_schema_view(
    list=extend_schema(
        summary="Templates: the organization's, the global ones and the built-in defaults",
        parameters=[OpenApiParameter("key", str), OpenApiParameter("language", str)],
    ),
    destroy=extend_schema(summary="Delete an organization's template (admins only)"),
)
class TemplateViewSet(ScopedViewSet):
    serializer_class = TemplateSerializer
    permission_classes = [MembersWrite, AdminsDelete]
    pagination_class = None  # a handful per clinic, and the built-ins are not rows

    def get_queryset(self):
        return operations.visible_templates(self.request.user)

    def list(self, request, *args, **kwargs):
        templates = operations.template_catalogue(
            request.user,
            key=request.query_params.get("key", ""),
            language=request.query_params.get("language", ""),
        )
        return Response(self.get_serializer(templates, many=True).data)

    def check_object_permissions(self, request, obj) -> None:
        super().check_object_permissions(request, obj)
        writing = request.method not in ("GET", "HEAD", "OPTIONS")
        if writing and obj.organization_id is None and not is_operator(request.user):
            raise PermissionDenied("Global templates are changed in the admin, by operators.")


class NotFoundView(APIView):
    """Any other path under the API: a JSON 404 like the API's own, not Django's HTML page
    (and never the APPEND_SLASH redirect, which cannot carry a POST's body)."""

    authentication_classes = []
    permission_classes = [AllowAny]
    schema = None  # not an operation

    def answer(self, request, *args, **kwargs):
        raise NotFound("Not found. API paths end with a slash, e.g. /api/scheduler/messages/.")

    get = post = put = patch = delete = head = options = answer


class HealthView(APIView):
    """Open to probes without a token: it shows no patient data, hosts or URLs."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [HealthThrottle]

    @extend_schema(
        summary="Readiness: database, Redis, Beat and workers",
        auth=[],
        responses={200: HealthSerializer, 503: HealthSerializer},
    )
    def get(self, request):
        report = health_answer()
        return Response(report, status=503 if report["failing"] else 200)
