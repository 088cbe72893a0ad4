"""Compact, pickle-free payloads: msgpack of field values, rebuilt with ``Model.from_db``."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
from django.db import models

__all__ = ["ABSENT", "POINTER", "ROW", "Codec", "CorruptPayload", "Payload"]

# Payload kinds. The header is [kind, generation, recompute_us, expires_ms]: the time the
# database read took and when the entry expires feed early refresh. Odd constants make a
# foreign msgpack list very unlikely to pass for one of ours.
ROW = 0xC51
ABSENT = 0xC52
POINTER = 0xC53
HEADER = 4

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

Convert = Callable[[Any], Any]


class CorruptPayload(ValueError):
    """A value in Redis that is not a payload this codec can read."""


class Payload:
    """A decoded payload: its kind, the generation it was filled under and its values."""

    __slots__ = ("expires_ms", "generation", "kind", "recompute_us", "values")

    def __init__(self, items: list[Any]) -> None:
        self.kind, self.generation, self.recompute_us, self.expires_ms = items[:HEADER]
        self.values = items[HEADER:]


def _encode_datetime(value: datetime.datetime) -> int | str:
    if value.tzinfo is None:
        return value.isoformat()
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _decode_datetime(value: int | str) -> datetime.datetime:
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value)
    return EPOCH + datetime.timedelta(microseconds=value)


def _encode_duration(value: datetime.timedelta) -> int:
    return (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds


def _json_codec(field: models.JSONField[Any]) -> tuple[Convert, Convert]:
    # Mirror what the database round trip does, custom encoder and decoder included.
    def encode(value: Any) -> str:
        return json.dumps(value, cls=field.encoder)

    def decode(value: str) -> Any:
        return json.loads(value, cls=field.decoder)

    return encode, decode


_CODECS: dict[str, tuple[Convert, Convert]] = {
    "DateTimeField": (_encode_datetime, _decode_datetime),
    "DateField": (datetime.date.toordinal, datetime.date.fromordinal),
    "TimeField": (datetime.time.isoformat, datetime.time.fromisoformat),
    "DecimalField": (str, decimal.Decimal),
    "UUIDField": (lambda v: v.bytes, lambda v: uuid.UUID(bytes=v)),
    "DurationField": (_encode_duration, lambda v: datetime.timedelta(microseconds=v)),
    "BinaryField": (bytes, bytes),
}


def field_codec(field: models.Field[Any, Any]) -> tuple[Convert, Convert] | None:
    """Encoder and decoder for a field's Python value, or None when msgpack holds it as is."""
    if field.is_relation:
        target = getattr(field, "target_field", None)
        return field_codec(target) if target is not None else None
    if isinstance(field, models.JSONField):
        return _json_codec(field)
    return _CODECS.get(field.get_internal_type())


class Codec:
    """Encodes a model's concrete field values to bytes and back."""

    def __init__(self, model: type[models.Model]) -> None:
        fields = model._meta.concrete_fields
        self.attnames = [f.attname for f in fields]
        self.width = len(fields) + HEADER
        codecs = [(i + HEADER, field_codec(f)) for i, f in enumerate(fields)]
        self.encoders = [(i, c[0]) for i, c in codecs if c is not None]
        self.decoders = [(i, c[1]) for i, c in codecs if c is not None]

    def dump_row(
        self, instance: models.Model, generation: bytes, recompute_us: int = 0, expires_ms: int = 0
    ) -> bytes:
        items = [ROW, generation, recompute_us, expires_ms]
        items.extend(getattr(instance, name) for name in self.attnames)
        for index, encode in self.encoders:
            if items[index] is not None:
                items[index] = encode(items[index])
        return msgpack.packb(items, use_bin_type=True)  # type: ignore[no-any-return]

    @staticmethod
    def dump_marker(kind: int, generation: bytes, values: Sequence[Any] = ()) -> bytes:
        return msgpack.packb([kind, generation, 0, 0, *values], use_bin_type=True)  # type: ignore[no-any-return]

    def load(self, data: bytes) -> Payload:
        """Decode a payload; any malformed input raises :class:`CorruptPayload`."""
        try:
            items = msgpack.unpackb(data)
            if type(items) is not list or len(items) < HEADER:
                raise CorruptPayload("not a payload")
            kind = items[0]
            if kind == ROW:
                if len(items) != self.width:
                    raise CorruptPayload("row payload of another width")
                for index, decode in self.decoders:
                    if items[index] is not None:
                        items[index] = decode(items[index])
            elif kind != ABSENT and kind != POINTER:
                raise CorruptPayload("unknown payload kind")
            return Payload(items)
        except CorruptPayload:
            raise
        except Exception as exc:  # any decoding failure means "not ours": a miss
            raise CorruptPayload(str(exc)) from exc
