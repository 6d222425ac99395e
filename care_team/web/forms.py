"""Forms of the web UI: they read and check the input; creating a message is
scheduling.creation.message_create's job, whose errors are shown on these fields."""

from datetime import datetime

from django import forms
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from care_team.web.queries import available_templates, visible_organizations, visible_patients
from patients.models import Channel
from scheduling.attachments import Upload
from scheduling.creation import MessageRequest
from scheduling.models import ContentFormat, MessageStatus
from scheduling.phrases import MAX_PHRASE_LENGTH
from scheduling.recurrence import resolve_local

ANY_CHANNEL = [("", gettext_lazy("The patient's preferred channel"))]
MOST_URGENT, NORMAL = gettext_lazy("1 (most urgent)"), gettext_lazy("3 (normal)")
PRIORITIES = [(1, MOST_URGENT), (2, "2"), (3, NORMAL), (4, "4"), (5, "5")]
LAST_YEAR = 9000
WHEN_HELP = gettext_lazy(
    'In the patient\'s time zone, e.g. "daily at 08:00", "weekly on mon,wed at 09:00", '
    '"tomorrow 15:30" or "every 2h".'
)


class MessageFilterForm(forms.Form):
    status = forms.ChoiceField(
        choices=[("", gettext_lazy("Any status")), *MessageStatus.choices],
        required=False,
        label=gettext_lazy("Status"),
    )
    patient = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label=gettext_lazy("Any patient"),
        label=gettext_lazy("Patient"),
    )
    channel = forms.ChoiceField(
        choices=[("", gettext_lazy("Any channel")), *Channel.choices],
        required=False,
        label=gettext_lazy("Channel"),
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Another organization's patient is not a choice, so its id is "not valid".
        self.fields["patient"].queryset = visible_patients(user)


class PreviewForm(forms.Form):
    patient = forms.ModelChoiceField(queryset=None, required=False)
    when = forms.CharField(required=False, max_length=MAX_PHRASE_LENGTH)

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["patient"].queryset = visible_patients(user)


class ChartFilterForm(forms.Form):
    organization = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label=gettext_lazy("All my organizations"),
        label=gettext_lazy("Organization"),
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["organization"].queryset = visible_organizations(user)


class MessageCreateForm(forms.Form):
    patient = forms.ModelChoiceField(
        queryset=None, empty_label=gettext_lazy("Choose a patient"), label=gettext_lazy("Patient")
    )
    template = forms.ChoiceField(required=False, label=gettext_lazy("Template"))
    parameters = forms.CharField(
        required=False,
        label=gettext_lazy("Template parameters"),
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "time=08:00"}),
        help_text=gettext_lazy(
            "One name=value per line, e.g. time=08:00. {name} is the patient's."
        ),
    )
    content = forms.CharField(
        required=False,
        label=gettext_lazy("Or write the text"),
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    format = forms.ChoiceField(
        choices=ContentFormat.choices, initial=ContentFormat.TEXT, label=gettext_lazy("Format")
    )
    when = forms.CharField(
        required=False,
        max_length=MAX_PHRASE_LENGTH,
        label=gettext_lazy("When (phrase)"),
        help_text=WHEN_HELP,
    )
    send_at = forms.CharField(
        required=False,
        label=gettext_lazy("Or once, on a date"),
        max_length=32,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text=gettext_lazy("The patient's local time."),
    )
    channel = forms.ChoiceField(
        choices=[*ANY_CHANNEL, *Channel.choices], required=False, label=gettext_lazy("Channel")
    )
    priority = forms.TypedChoiceField(
        choices=PRIORITIES, coerce=int, initial=3, label=gettext_lazy("Priority")
    )
    attachment = forms.FileField(
        required=False,
        label=gettext_lazy("Photo, voice note or document"),
        help_text=gettext_lazy(
            "JPEG or PNG photos, OGG/MP3/M4A voice notes, PDF documents; each channel's size "
            "limit applies (Telegram: photos 10 MB, other files 50 MB)."
        ),
    )

    # Where each error of message_create belongs on this form; the rest go on top.
    SERVICE_FIELDS = {
        "patient": "patient",
        "template": "template",
        "params": "parameters",
        "body": "template",
        "content": "content",
        "format": "format",
        "channel": "channel",
        "priority": "priority",
        "schedule": "when",
        "recurrence": "when",
        "attachment": "attachment",
    }

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["patient"].queryset = visible_patients(user)
        self.fields["template"].choices = [("", _("No template: write the text below"))] + [
            (key, f"{key} ({', '.join(sorted(names))})" if names else key)
            for key, names in available_templates(user).items()
        ]
        # Both inputs refresh the preview of the next occurrences (htmx, a GET); a newer
        # request replaces one in flight, so a slow answer never overwrites a newer one.
        live = {
            "hx-get": reverse("scheduled_messages:preview"),
            "hx-target": "#preview",
            "hx-swap": "innerHTML",
            "hx-sync": "closest form:replace",
        }
        self.fields["when"].widget.attrs.update(
            {**live, "hx-trigger": "input changed delay:300ms", "hx-include": "#id_patient",
             "autocomplete": "off"}
        )  # fmt: skip
        self.fields["patient"].widget.attrs.update(
            {**live, "hx-trigger": "change", "hx-include": "#id_when"}
        )

    def clean_parameters(self) -> dict[str, str]:
        parameters = {}
        for line in self.cleaned_data["parameters"].splitlines():
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.strip().isidentifier():
                raise ValidationError(
                    _("Write each parameter as name=value, not %(line)s.")
                    % {"line": repr(line[:40])}
                )
            parameters[name.strip()] = value.strip()
        return parameters

    def clean_send_at(self) -> datetime | None:
        raw = self.cleaned_data["send_at"]
        if not raw:
            return None
        try:
            parsed = parse_datetime(raw)
        except ValueError:
            parsed = None  # well formed but impossible, e.g. month 13
        if parsed is None:
            raise ValidationError(_("Give a date and time such as 2025-04-15 14:00."))
        if parsed.year > LAST_YEAR:
            # Later times overflow Python's datetime once a zone or a window is added.
            raise ValidationError(
                _("Give a date before the year %(year)s.") % {"year": LAST_YEAR + 1}
            )
        return parsed

    def clean(self) -> dict:
        data = super().clean()
        has_text = bool(data.get("template")) or bool(data.get("content"))
        if bool(data.get("template")) and bool(data.get("content")):
            self.add_error("content", _("Choose a template or write the text (one of them)."))
        elif not has_text and not data.get("attachment"):
            self.add_error(
                "content",
                _("Choose a template or write the text (one of them), or attach a file."),
            )
        unread = "when" in self.errors or "send_at" in self.errors
        if bool(data.get("when")) == bool(data.get("send_at")) and not unread:
            self.add_error("when", _("Give a phrase, or a date below (one of them)."))
        patient, send_at = data.get("patient"), data.get("send_at")
        if patient is not None and send_at is not None and send_at.tzinfo is None:
            # Typed in the patient's local time; a time skipped by a DST change is read
            # as the first minute after the gap, as everywhere else.
            try:
                data["send_at"] = resolve_local(send_at, patient.zone)
            except OverflowError:  # around the year 1 in a zone east of UTC
                self.add_error("send_at", _("That date is out of range."))
        return data

    def message_request(self) -> MessageRequest:
        data = self.cleaned_data
        return MessageRequest(
            patient=data["patient"],
            content=data["content"] or None,
            format=data["format"],
            template=data["template"] or None,
            parameters=data["parameters"],
            scheduled_time=data["send_at"],
            schedule=data["when"] or None,
            channel=data["channel"] or None,
            priority=data["priority"],
            metadata={"source": "web"},
            attachment=_upload(data.get("attachment")),
        )

    def add_service_errors(self, error: ValidationError) -> None:
        """Shows message_create's errors next to the fields they are about."""
        if not hasattr(error, "error_dict"):
            self.add_error(None, error.messages)
            return
        time_field = "when" if self.cleaned_data.get("when") else "send_at"
        for name, problems in error.message_dict.items():
            if name in ("scheduled_time", "starts_at"):
                target = time_field
            else:
                target = self.SERVICE_FIELDS.get(name)
            self.add_error(target, problems)


def _upload(file) -> Upload | None:
    if not file:
        return None
    return Upload(data=file.read(), name=file.name or "")
