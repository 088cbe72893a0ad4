"""A process of its own for the missed-invalidation tests: ``write <pk>`` or ``read <pk>``.

It runs against the database and Redis named by the environment (see ``tests.settings``).
"""

from __future__ import annotations

import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from tests.testapp.models import Team  # noqa: E402 - after django.setup()


def main(action: str, pk: int) -> None:
    if action == "write":
        Team.objects.filter(pk=pk).update(name="after")
    else:
        print(Team.cached.get(pk=pk).name)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
