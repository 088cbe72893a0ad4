"""Redis key layout: namespace, canonical value text and hash tags; the schema hash."""

from __future__ import annotations

import datetime
import decimal
import hashlib
import uuid
import zlib
from typing import Any, NamedTuple

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, models
from django.utils import timezone

__all__ = [
    "KeySpace",
    "StripeKeys",
    "claim_parts",
    "key_part",
    "member_of_text",
    "member_parts",
    "schema_hash",
    "stripe_member",
    "stripe_of_text",
]

#: Bumped when the payload format changes, so old payloads are never decoded.
FORMAT_VERSION = "4"


def schema_hash(model: type[models.Model]) -> bytes:
    """A short hash of the concrete fields, carried in every payload: after a migration,
    a payload written by the other release reads as a miss."""
    parts = [FORMAT_VERSION]
    for field in model._meta.concrete_fields:
        kind = f"{type(field).__module__}.{type(field).__qualname__}"
        parts.append(f"{field.attname}:{field.column}:{kind}:{field.get_internal_type()}")
    # 4 bytes: a payload is checked against its own model's hash only, so 2^32 values
    # keep two releases of one model apart as well as 8 hex digits did, in 5 bytes less.
    return hashlib.sha1("|".join(parts).encode(), usedforsecurity=False).digest()[:4]


def key_part(value: Any) -> str:
    """The text of a pk or lookup value inside a key (``to_python``-cleaned by the caller).

    One text per value the database finds equal, and never one for two values: an equal
    datetime in another time zone or a Decimal with more zeros names the same key, so a
    write that names the row deletes what a reader cached. None names no key at all: a
    lookup of NULL is the database's to answer (``IS NULL``, possibly many rows).
    """
    if type(value) is int:  # the commonest pk first: its text is str()
        return str(value)
    if value is None:
        raise ValueError("None names no cache key; read NULL lookups from the database")
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime.datetime):
        return _datetime_text(value)
    if isinstance(value, decimal.Decimal):
        # NOTE: normalize() drops trailing zeros (1.00 -> 1) but may use an exponent
        # (100 -> 1E+2): "f" spells it out; a zero of any sign or exponent is "0".
        return "0" if value.is_zero() else format(value.normalize(), "f")
    if isinstance(value, float):
        return repr(value + 0.0)  # -0.0 + 0.0 is 0.0: one key for the two zeros
    # int, str, bool, date, time: str() is already canonical, and pks (ints, text) keep
    # the text that write-behind stripe members are built from.
    return str(value)


def stripe_member(field: str, pk: Any) -> str:
    """The field of a stripe's hashes that holds one row's pending increments of one
    counter: ``<counter>:<pk text>``."""
    return member_of_text(field, key_part(pk))


def member_of_text(field: str, text: str) -> str:
    """``stripe_member`` for a pk whose key text is known already."""
    return f"{field}:{text}"


def stripe_of_text(text: str, stripes: int) -> int:
    """``KeySpace.stripe_of`` for a pk whose key text is known already."""
    return zlib.crc32(text.encode()) % stripes


def member_parts(member: str) -> tuple[str, str]:
    """The counter and the pk text of a stripe member. The pk text may hold colons; a
    counter's name cannot, so the first colon splits them."""
    field, _, text = member.partition(":")
    return field, text


def claim_parts(claim: bytes) -> tuple[str, int]:
    """The batch id and the claim time (ms) of a stripe's ``claim`` key, which ``claim.lua``
    sets to ``<batch id>:<ms>``."""
    batch_id, _, claimed_at = claim.rpartition(b":")
    return batch_id.decode(), int(claimed_at)


def _datetime_text(value: datetime.datetime) -> str:
    if timezone.is_naive(value):
        if not settings.USE_TZ:
            return value.isoformat()
        # What DateTimeField.get_prep_value compares: naive means the default time zone.
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return value.astimezone(datetime.UTC).isoformat()


class StripeKeys(NamedTuple):
    """The keys of one write-behind stripe; one hash tag, so one Redis Cluster slot."""

    pending: str  # HASH "field:pk" -> delta, not yet claimed
    claimed: str  # HASH of the batch being flushed
    claim: str  # "batch_id:claimed_at_ms" while a batch is in flight
    version: str  # bumped when a batch is claimed and when it is acknowledged
    throttle: str  # set for a moment when a full stripe has asked for a flush

    def sequence(self, client: str) -> str:
        """The last increment number one client thread sent to this stripe."""
        return f"{self.pending[: -len('pending')]}seq:{client}"

    @staticmethod
    def settled(sequence: str, number: int) -> str:
        """Set once the increment ``number`` of that sequence has been settled."""
        return f"{sequence}:settled:{number}"


class KeySpace:
    """Every key of one model in one database: ``{prefix}:{app_label}.{model}:{{pk}}``
    and friends; ``{prefix}:{app_label}.{model}@{alias}:{{pk}}`` for rows of a database
    other than ``default`` (the same pk in two databases is two rows, so two keys).

    The ``{...}`` hash tag holds only the pk (or lookup value), so a row, its lease and its
    lookup's lease live in one Redis Cluster slot and every Lua script stays single-slot.

    NOTE: keys carry no schema hash. While two releases run side by side across a
    migration, a row has one key for both, so a write made by either release deletes
    what readers of the other one cached; the payload names its schema instead.
    """

    __slots__ = ("_stripes", "absent", "base", "database", "generation", "label", "namespace")

    def __init__(
        self, prefix: str, model: type[models.Model], database: str = DEFAULT_DB_ALIAS
    ) -> None:
        concrete = model._meta.concrete_model
        assert concrete is not None
        self.label = concrete._meta.label_lower
        self.database = database
        # The default database keeps the key text of releases that named no database, so
        # a project with one database sees no change (and no cold cache on upgrade).
        where = "" if database == DEFAULT_DB_ALIAS else f"@{database}"
        self.namespace = f"{prefix}:{self.label}{where}:"
        self.base = self.namespace
        # Flushing a model gives this key a new random value; payloads carry the
        # generation they were filled under, so a flush is one SET and old payloads read
        # as misses (random: an evicted key never comes back with an old value).
        self.generation = f"{self.namespace}gen"
        # Bumped by inserts the app cannot name (bulk_create, raw SQL): voids every cached
        # "no such row", and nothing else.
        self.absent = f"{self.namespace}absent"
        self._stripes: dict[int, StripeKeys] = {}

    def row(self, pk: Any) -> str:
        return f"{self.base}{{{key_part(pk)}}}"

    def lookup(self, field: str, value: Any) -> str:
        return f"{self.base}{field}:{{{key_part(value)}}}"

    @staticmethod
    def written(key: str) -> str:
        """Set for a moment when a write on the primary deletes ``key`` (a row, a lookup,
        a generation): a fill that reads a replica and finds it reads the primary."""
        return f"{key}:written"

    @staticmethod
    def lease(key: str) -> str:
        return f"{key}:lease"

    def stripe(self, index: int) -> StripeKeys:
        try:
            return self._stripes[index]
        except KeyError:
            # Counters outlive deploys: like every key, these carry no schema hash.
            base = f"{self.namespace}wb:{{{self.label}:{index}}}:"
            keys = self._stripes[index] = StripeKeys(*(base + n for n in StripeKeys._fields))
            return keys

    @staticmethod
    def stripe_of(pk: Any, stripes: int) -> int:
        """Spread a model's pending increments over stripes, so a hot model is not one key."""
        return stripe_of_text(key_part(pk), stripes)

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of the model, whatever its schema."""
        return f"{self.namespace}*"
