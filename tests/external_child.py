"""A consumer of captured outside writes in a process of its own, to be killed: it takes a
batch, says ``taken`` and waits before invalidating it (``python -m tests.external_child``)."""

from __future__ import annotations

import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from django_cachestrat import external  # noqa: E402 - after django.setup()


def main() -> None:
    send = external.send_invalidations

    def slow_send(*args: object) -> None:
        print("taken", flush=True)
        time.sleep(60)  # killed here: the batch is held, nothing is invalidated yet
        send(*args)  # type: ignore[arg-type]

    external.send_invalidations = slow_send  # type: ignore[assignment]
    external.consume("default")


if __name__ == "__main__":
    main()
