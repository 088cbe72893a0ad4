"""Redis key layout: namespace, schema hash and hash tags."""

from __future__ import annotations

import hashlib
import uuid
import zlib
from typing import Any, NamedTuple

from django.db import models

__all__ = ["KeySpace", "StripeKeys", "key_part", "schema_hash"]

#: Bumped when the payload format changes, so old payloads are never decoded.
FORMAT_VERSION = "2"


def schema_hash(model: type[models.Model]) -> str:
    """A short hash of the concrete fields: a migration changes every key of the model."""
    parts = [FORMAT_VERSION]
    for field in model._meta.concrete_fields:
        kind = f"{type(field).__module__}.{type(field).__qualname__}"
        parts.append(f"{field.attname}:{field.column}:{kind}:{field.get_internal_type()}")
    return hashlib.sha1("|".join(parts).encode(), usedforsecurity=False).hexdigest()[:8]


def key_part(value: Any) -> str:
    """The text of a pk or lookup value inside a key (normalised by the caller)."""
    if isinstance(value, uuid.UUID):
        return value.hex
    return str(value)


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
    """Every key of one model: ``{prefix}:{app_label}.{model}:{schema}:{{pk}}`` and friends.

    The ``{...}`` hash tag holds only the pk (or lookup value), so a row, its lease and its
    lookup's lease live in one Redis Cluster slot and every Lua script stays single-slot.
    """

    __slots__ = ("_stripes", "absent", "base", "generation", "label", "namespace")

    def __init__(self, prefix: str, model: type[models.Model]) -> None:
        concrete = model._meta.concrete_model
        assert concrete is not None
        self.label = concrete._meta.label_lower
        self.namespace = f"{prefix}:{self.label}:"
        self.base = f"{self.namespace}{schema_hash(concrete)}:"
        # Flushing a model bumps this counter; payloads carry the generation they were
        # filled under, so a flush is one INCR and old payloads read as misses.
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
    def lease(key: str) -> str:
        return f"{key}:lease"

    def stripe(self, index: int) -> StripeKeys:
        try:
            return self._stripes[index]
        except KeyError:
            # Counters outlive deploys, so these keys carry no schema hash.
            base = f"{self.namespace}wb:{{{self.label}:{index}}}:"
            keys = self._stripes[index] = StripeKeys(*(base + n for n in StripeKeys._fields))
            return keys

    @staticmethod
    def stripe_of(pk: Any, stripes: int) -> int:
        """Spread a model's pending increments over stripes, so a hot model is not one key."""
        return zlib.crc32(key_part(pk).encode()) % stripes

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of the model, whatever its schema."""
        return f"{self.namespace}*"
