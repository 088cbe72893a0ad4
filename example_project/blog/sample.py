"""Sample posts for the demo, created once."""

from __future__ import annotations

from datetime import UTC, datetime

from .models import Post

SAMPLE_POSTS: list[dict[str, str | datetime]] = [
    {
        "slug": "hello-redis",
        "title": "Hello, Redis",
        "body": "Rows are read from Redis first and from the database on a miss.",
        "published": datetime(2025, 1, 6, 9, 0, tzinfo=UTC),
    },
    {
        "slug": "counting-views",
        "title": "Counting views without a write per view",
        "body": "Each view adds one to a counter in Redis; a flush applies the sum in one "
        "transaction.",
        "published": datetime(2025, 2, 3, 9, 0, tzinfo=UTC),
    },
    {
        "slug": "exactly-once",
        "title": "Exactly once",
        "body": "A batch records its id in the transaction that applies it, so a flush that "
        "runs twice applies it once.",
        "published": datetime(2025, 3, 3, 9, 0, tzinfo=UTC),
    },
]


def ensure_sample_posts() -> int:
    """Create the sample posts that are missing; returns how many were created."""
    created = 0
    for data in SAMPLE_POSTS:
        defaults = {k: v for k, v in data.items() if k != "slug"}
        _, new = Post.objects.get_or_create(slug=data["slug"], defaults=defaults)
        created += new
    return created
