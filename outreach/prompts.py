"""What the language model is told for a check-in, and nothing more.

By default (an organization's `share_context_with_llm` off) the prompt holds the
companion's persona, the patient's first name and language, and the weather where they
live: no surname, no contact, no id, no health information. With it on, it adds this
week's medication adherence (counts) and the times of upcoming appointment reminders.
README, *What leaves to the language model and the weather service*.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from outreach.models import CompanionPersona
from patients.models import Patient
from scheduling.models import Acknowledgement, MessageKind, MessageStatus, ScheduledMessage

LANGUAGE_NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "pl": "Polish",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "ru": "Russian",
    "ar": "Arabic",
}


@dataclass(frozen=True)
class Persona:
    name: str
    style: str

    @classmethod
    def of(cls, persona: CompanionPersona | None) -> "Persona":
        if persona is None:
            return cls("Mia", "warm and encouraging")
        return cls(persona.companion_name, persona.support_style)


def first_name(patient: Patient) -> str:
    return (patient.name.split() or [""])[0][:40]


def language_name(code: str) -> str:
    base = (code or "en").split("-")[0].lower()
    return LANGUAGE_NAMES.get(base, code)


def system_prompt(persona: Persona, patient: Patient, *, role: str) -> dict[str, str]:
    return {
        "role": "system",
        "content": (
            f"You are {persona.name}, a companion who {role} on behalf of a clinic. Your style is "
            f"{persona.style}. Write in {language_name(patient.language)}. Write plain text "
            "only: no links, no HTML, no markdown. Never give medical advice or mention "
            "diagnoses or medicines; if something sounds worrying, encourage them to contact "
            "their care team."
        ),
    }


def check_in_prompt(
    patient: Patient, persona: Persona, *, weather: str | None, context: list[str]
) -> list[dict[str, str]]:
    lines = [
        f"Write today's check-in message for {first_name(patient)}: one or two warm, "
        "personal sentences that ask how they are, referring to something relevant below."
    ]
    if weather:
        lines.append(f"The weather where they live today: {weather}.")
    return [
        system_prompt(persona, patient, role="checks in on patients every day"),
        {"role": "user", "content": "\n".join(lines + context)},
    ]


def follow_up_prompt(
    patient: Patient, persona: Persona, *, quiet_days: int | None, context: list[str]
) -> list[dict[str, str]]:
    quiet = f"for {quiet_days} days" if quiet_days else "for a while"
    lines = [
        f"Write a short, caring message to {first_name(patient)}, who has not been in touch "
        f"{quiet}: one or two sentences inviting them to reply, without pressure."
    ]
    return [
        system_prompt(persona, patient, role="keeps in touch with patients"),
        {"role": "user", "content": "\n".join(lines + context)},
    ]


def patient_context(patient: Patient, now: datetime) -> list[str]:
    """What an organization may choose to share: counts and times, no texts."""
    week_ago = now - timedelta(days=7)
    answers = list(
        Acknowledgement.objects.filter(
            delivery__message__patient=patient, at__gte=week_ago
        ).values_list("action", flat=True)
    )
    context = []
    if answers:
        taken = sum(1 for action in answers if action == "taken")
        context.append(f"This week they confirmed {taken} of {len(answers)} medication reminders.")
    zone = ZoneInfo(patient.timezone)
    upcoming = ScheduledMessage.objects.filter(
        patient=patient,
        kind=MessageKind.APPOINTMENT,
        status=MessageStatus.ACTIVE,
        next_occurrence_at__gte=now,
        next_occurrence_at__lte=now + timedelta(days=7),
    ).values_list("next_occurrence_at", flat=True)[:3]
    for at in upcoming:
        context.append(f"They have an appointment on {at.astimezone(zone):%A at %H:%M}.")
    return context
