"""The admin's half of organization isolation: every list, page, action, lookup and
filter shows only the user's organizations (patients.access)."""

from django.contrib import admin

from patients.access import ORGANIZATION_PATH, organization_ids, scoped

ORGANIZATION_FILTER = ("organization", admin.RelatedOnlyFieldListFilter)


class OrganizationScopedAdmin(admin.ModelAdmin):
    def get_queryset(self, request):
        return scoped(super().get_queryset(request), request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        if related._meta.model_name in ORGANIZATION_PATH:
            kwargs["queryset"] = scoped(related._default_manager.all(), request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def user_sees_everything(request) -> bool:
    return organization_ids(request.user) is None
