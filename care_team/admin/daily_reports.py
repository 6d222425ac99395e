"""The daily report as CSV from the admin: an action on the organizations list (the
selected ones, yesterday) and a page with a date (the user's organizations, any past
day). Both read only the organizations the admin's queryset shows the user."""

from datetime import timedelta

from django import forms
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from operations.reports import EARLIEST_DAY, daily_reports, reports_csv


class DailyReportForm(forms.Form):
    date = forms.DateField(
        input_formats=["%Y-%m-%d"],
        help_text="YYYY-MM-DD; a UTC day.",
        error_messages={"invalid": "Give the date as YYYY-MM-DD, e.g. 2026-03-01."},
    )

    def clean_date(self):
        day = self.cleaned_data["date"]
        if day > timezone.now().date():
            raise forms.ValidationError("That day is in the future: the report has no data yet.")
        if day < EARLIEST_DAY:
            raise forms.ValidationError(f"There is no report before {EARLIEST_DAY}.")
        return day


def csv_response(organizations, day) -> HttpResponse:
    response = HttpResponse(
        reports_csv(daily_reports(list(organizations), day)), content_type="text/csv"
    )
    response["Content-Disposition"] = f'attachment; filename="daily-report-{day}.csv"'
    return response


def yesterdays_report(modeladmin, request, queryset) -> HttpResponse:
    return csv_response(queryset.order_by("slug"), timezone.now().date() - timedelta(days=1))


yesterdays_report.short_description = "Download yesterday's daily report (CSV)"


def daily_report_page(modeladmin, request) -> HttpResponse:
    form = DailyReportForm(request.GET or None)
    if form.is_valid():
        organizations = modeladmin.get_queryset(request).order_by("slug")
        return csv_response(organizations, form.cleaned_data["date"])
    context = modeladmin.admin_site.each_context(request)
    context.update(form=form, title="Daily report (CSV)", opts=modeladmin.model._meta)
    return TemplateResponse(request, "admin/patients/daily_report.html", context)
