"""Compact, pickle-free payloads: msgpack of field values, rebuilt with ``Model.from_db``."""

from __future__ import annotations

import binascii
import datetime
import decimal
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
from django.db import models

from .keys import schema_hash

__all__ = [
    "ABSENT",
    "POINTER",
    "ROW",
    "Codec",
    "CorruptPayload",
    "Payload",
    "generation_tag",
    "json_text_name",
]

# Payload kinds. The header is [kind, schema, generation, recompute_us, expires_ms]: the
# schema hash of the release that wrote it (another release's payload is a miss), and the
# time the database read took and when the entry expires, for early refresh. The kinds are
# negative msgpack fixints (one byte each); what keeps a foreign msgpack list from passing
# for one of ours is the 4-byte schema hash beside them.
ROW = -27
ABSENT = -26
POINTER = -25
HEADER = 5

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

Convert = Callable[[Any], Any]


def generation_tag(stored: bytes) -> bytes:
    """The form a generation stored in Redis takes inside payloads: its 16 hex digits as
    8 bytes (anything else, kept as it is, still matches only itself)."""
    if len(stored) == 16:
        try:
            return binascii.unhexlify(stored)
        except binascii.Error:
            pass
    return stored


class CorruptPayload(ValueError):
    """A value in Redis that is not a payload this codec can read."""


class Payload:
    """A decoded payload: its kind, the generation it was filled under and its values."""

    __slots__ = ("expires_ms", "generation", "kind", "recompute_us", "values")

    def __init__(self, items: list[Any]) -> None:
        self.kind, _, self.generation, self.recompute_us, self.expires_ms = items[:HEADER]
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


def json_text_name(attname: str) -> str:
    """The attribute a fill query gives an instance: the database's text of a JSON field."""
    return f"_cs_json_{attname}"


def _decode_json(field: models.JSONField[Any], text: str) -> Any:
    # What JSONField.from_db_value does with the text a database read returns.
    try:
        return json.loads(text, cls=field.decoder)
    except json.JSONDecodeError:
        return text


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
    return _CODECS.get(field.get_internal_type())


class Codec:
    """Encodes a model's concrete field values to bytes and back."""

    def __init__(self, model: type[models.Model]) -> None:
        fields = model._meta.concrete_fields
        self.schema = schema_hash(model)
        self.attnames = [f.attname for f in fields]
        self.width = len(fields) + HEADER
        codecs = [(i + HEADER, field_codec(f)) for i, f in enumerate(fields)]
        self.encoders = [(i, c[0]) for i, c in codecs if c is not None]
        self.decoders = [(i, c[1]) for i, c in codecs if c is not None]
        # JSON is stored as the database's own text and decoded as a database read
        # decodes it: a custom encoder need not be the inverse of the decoder.
        self.json_fields: list[tuple[int, models.JSONField[Any]]] = [
            (i + HEADER, f) for i, f in enumerate(fields) if isinstance(f, models.JSONField)
        ]

    def dump_row(
        self, instance: models.Model, generation: bytes, recompute_us: int = 0, expires_ms: int = 0
    ) -> bytes:
        """Encode a row read from the database; ValueError or TypeError if it cannot be
        stored so that a hit rebuilds exactly that row."""
        texts = [
            instance.__dict__.pop(json_text_name(f.attname), None) for _, f in self.json_fields
        ]
        items = [ROW, self.schema, generation, recompute_us, expires_ms]
        items.extend(getattr(instance, name) for name in self.attnames)
        for index, encode in self.encoders:
            if items[index] is not None:
                items[index] = encode(items[index])
        for (index, field), text in zip(self.json_fields, texts, strict=True):
            items[index] = self._json_text(field, items[index], text)
        return msgpack.packb(items, use_bin_type=True)  # type: ignore[no-any-return]

    @staticmethod
    def _json_text(field: models.JSONField[Any], value: Any, text: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(text, str):  # not read by a fill query: encode it ourselves
            text = str(json.dumps(value, cls=field.encoder))
        # NOTE: a hit must rebuild what the database read gave; a decoder that does not
        # give back the same value (a custom from_db_value, NaN) leaves the row uncached.
        if _decode_json(field, text) != value:
            raise ValueError(f"{field.name}: the JSON value does not decode back to itself")
        return str(text)

    def dump_marker(self, kind: int, generation: bytes, values: Sequence[Any] = ()) -> bytes:
        items = [kind, self.schema, generation, 0, 0, *values]
        return msgpack.packb(items, use_bin_type=True)  # type: ignore[no-any-return]

    def load(self, data: bytes) -> Payload:
        """Decode a payload; any malformed input raises :class:`CorruptPayload`."""
        try:
            items = msgpack.unpackb(data)
            if type(items) is not list or len(items) < HEADER:
                raise CorruptPayload("not a payload")
            kind = items[0]
            if items[1] != self.schema:  # written by a release with other fields
                raise CorruptPayload("payload of another schema")
            if kind == ROW:
                if len(items) != self.width:
                    raise CorruptPayload("row payload of another width")
                for index, decode in self.decoders:
                    if items[index] is not None:
                        items[index] = decode(items[index])
                for index, field in self.json_fields:
                    if items[index] is not None:
                        items[index] = _decode_json(field, items[index])
            elif kind != ABSENT and kind != POINTER:
                raise CorruptPayload("unknown payload kind")
            return Payload(items)
        except CorruptPayload:
            raise
        except Exception as exc:  # any decoding failure means "not ours": a miss
            raise CorruptPayload(str(exc)) from exc
