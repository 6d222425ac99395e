"""The admin's half of organization isolation: every list, page, action, lookup and
filter shows only the user's organizations (patients.access)."""

from django.contrib import admin
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.core.exceptions import ValidationError
from django.urls import NoReverseMatch, reverse
from django.utils.text import Truncator

from patients.access import ORGANIZATION_PATH, is_operator, scoped

ORGANIZATION_FILTER = ("organization", admin.RelatedOnlyFieldListFilter)


class ScopedRawIdWidget(ForeignKeyRawIdWidget):
    """A raw-id input whose label (the name shown next to the id) is read from the field's
    own choices. Django's reads it from the model's default manager, so any id typed into
    the address bar (`?patient=N`) or posted named another clinic's patient."""

    def label_and_url_for_value(self, value):
        choices = getattr(self, "choices", None)  # set by the ModelChoiceField
        if choices is None:
            return "", ""
        key = self.rel.get_related_field().name
        try:
            obj = choices.queryset.using(self.db).get(**{key: value})
        except (ValueError, ValidationError, choices.queryset.model.DoesNotExist):
            return "", ""
        opts = obj._meta
        try:
            url = reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]
            )
        except NoReverseMatch:
            url = ""
        return Truncator(obj).words(14), url


class ScopedForeignKeys:
    """Every foreign key of a form (select, raw id or autocomplete) offers, and names, only
    the objects of the user's organizations."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        if related._meta.model_name in ORGANIZATION_PATH:
            kwargs["queryset"] = scoped(related._default_manager.all(), request.user)
        if db_field.name in self.raw_id_fields and "widget" not in kwargs:
            kwargs["widget"] = ScopedRawIdWidget(
                db_field.remote_field, self.admin_site, using=kwargs.get("using")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class OrganizationScopedAdmin(ScopedForeignKeys, admin.ModelAdmin):
    global_rows_visible = False  # rows without organization, which every clinic reads

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        visible = scoped(rows, request.user)
        if self.global_rows_visible:
            visible |= rows.filter(organization__isnull=True)
        return visible


def user_sees_everything(request) -> bool:
    return is_operator(request.user)
