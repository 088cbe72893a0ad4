"""Sample profiles for the demo, created once."""

from __future__ import annotations

from .models import Profile

SAMPLE_PROFILES: list[dict[str, str | int]] = [
    {"username": "jane", "display_name": "Jane Doe", "bio": "Writes the docs.", "karma": 42},
    {"username": "amir", "display_name": "Amir Haddad", "bio": "Tunes databases.", "karma": 17},
    {"username": "li", "display_name": "Li Wei", "bio": "Runs the on-call.", "karma": 8},
    {"username": "olga", "display_name": "Olga Petrova", "bio": "Reviews everything.", "karma": 23},
    {"username": "kofi", "display_name": "Kofi Mensah", "bio": "Ships on Fridays.", "karma": 5},
]


def ensure_sample_profiles() -> int:
    """Create the sample profiles that are missing; returns how many were created."""
    created = 0
    for data in SAMPLE_PROFILES:
        defaults = {k: v for k, v in data.items() if k != "username"}
        _, new = Profile.objects.get_or_create(username=data["username"], defaults=defaults)
        created += new
    return created
