"""The admin's contact form (the patient page's inline and the contact page): the care
team types an address and may confirm it; it cannot set `verified` (patients.contacts).

The confirmation itself is recorded by the admin (it knows who is confirming) through
patients.contacts.contact_confirm, after the contact is saved.
"""

from django import forms

from patients.contacts import TAKEN_IN_ORGANIZATION, address_taken_in_organization, contact_unverify
from patients.models import Contact

CONFIRM_HELP = (
    "Tick when you have checked with the patient that this address is theirs. It is "
    "recorded with your name and the time; messages go only to verified contacts."
)


class ContactForm(forms.ModelForm):
    confirm = forms.BooleanField(
        required=False, label="Confirmed with the patient", help_text=CONFIRM_HELP
    )

    class Meta:
        model = Contact
        fields = ["patient", "channel", "address", "blocked_at", "blocked_reason"]

    def clean(self):
        data = super().clean()
        patient = data.get("patient") or getattr(self.instance, "patient", None)
        channel, address = data.get("channel"), (data.get("address") or "").strip()
        if patient is None or not channel or not address:
            return data
        # Only this clinic's patients are looked at: another clinic's never show.
        taken = address_taken_in_organization(
            organization_id=patient.organization_id,
            channel=channel,
            address=address,
            patient_id=patient.pk,
        )
        if taken:
            self.add_error("address", TAKEN_IN_ORGANIZATION.format(channel=channel))
        return data

    def save(self, commit: bool = True) -> Contact:
        if self.instance.pk is not None and {"channel", "address"} & set(self.changed_data):
            contact_unverify(self.instance)  # a new address is not verified
        return super().save(commit)
