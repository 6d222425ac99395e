"""Inlines that stay small. A message's page rendered every one of its deliveries (20,000
took 49 s); each inline now shows its latest rows, at most LATEST_ROWS, and links to the
list of all of them, filtered by the object whose page it is."""

from django.contrib import admin
from django.forms.models import BaseInlineFormSet
from django.urls import NoReverseMatch, reverse

from care_team.admin.scoping import ScopedForeignKeys

LATEST_ROWS = 20


class LatestRowsFormSet(BaseInlineFormSet):
    """The inline's queryset (ordered latest first by the inline) cut to its first
    `shown` rows; `total` counts them all."""

    shown = LATEST_ROWS
    all_rows_url = ""  # set per page by LatestRowsInline.get_formset
    total = 0

    def get_queryset(self):
        if not hasattr(self, "_latest_rows"):
            rows = super().get_queryset()
            self.total = rows.count()
            self._latest_rows = rows[: self.shown]
        return self._latest_rows


class LatestRowsInline(ScopedForeignKeys, admin.TabularInline):
    formset = LatestRowsFormSet
    template = "admin/edit_inline/tabular_latest_rows.html"
    extra = 0

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        if obj is not None and obj.pk is not None:
            formset.all_rows_url = self.all_rows_url(formset.fk.name, obj.pk)
        return formset

    def all_rows_url(self, parent_field: str, parent_pk) -> str:
        opts = self.model._meta
        name = f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist"
        try:
            return f"{reverse(name)}?{parent_field}__id__exact={parent_pk}"
        except NoReverseMatch:  # no list of its own: the count alone is shown
            return ""
