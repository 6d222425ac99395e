"""Query parameters of the message list: filters and a stable ordering."""

from datetime import UTC

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField
from rest_framework.filters import OrderingFilter

from patients.access import scoped
from patients.models import Channel, Patient
from scheduling.models import MessageStatus, ScheduledMessage


def _visible_patients(request):
    if request is None:  # the schema generator asks without a request
        return Patient.objects.none()
    return scoped(Patient.objects.all(), request.user)


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, handed to the database in UTC: PostgreSQL refuses offsets past
    15:59, which Python (and so a query string) allows up to 23:59."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except OverflowError as exc:
            raise forms.ValidationError("The time is out of range.", code="invalid") from exc


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class MessageFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=MessageStatus.choices)
    # Another organization's patient is "not a valid choice", like one that does not exist.
    patient = django_filters.ModelChoiceFilter(queryset=_visible_patients)
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    due_before = UtcDateTimeFilter(
        field_name="next_run_at", lookup_expr="lte", label="Next run at or before (ISO 8601)."
    )
    due_after = UtcDateTimeFilter(
        field_name="next_run_at", lookup_expr="gte", label="Next run at or after (ISO 8601)."
    )

    class Meta:
        model = ScheduledMessage
        fields = ["status", "patient", "channel", "due_before", "due_after"]


class StableOrderingFilter(OrderingFilter):
    """Ends every ordering with the id, so rows that tie on the chosen field (the same
    priority) keep one order and pages neither repeat nor skip them."""

    def get_ordering(self, request, queryset, view):
        ordering = list(super().get_ordering(request, queryset, view) or [])
        if ordering and not any(term.lstrip("-") in ("id", "pk") for term in ordering):
            ordering.append("-id" if ordering[-1].startswith("-") else "id")
        return ordering
