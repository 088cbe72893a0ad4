"""Forms of the admin inspector: which row to inspect, and what to do to the cache."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from .options import cached_models
from .plan import plan_for

__all__ = ["ACTIONS", "ActionForm", "InspectForm", "cached_model", "clean_pk"]

#: What the inspector's buttons do; "invalidate" needs a pk, the others a model only.
ACTIONS = {
    "invalidate": "Invalidate this row",
    "flush": "Flush the model's namespace",
    "flush_counters": "Flush counters now",
}


def cached_model(label: str) -> type[models.Model] | None:
    """The cached model named ``app_label.model_name`` (any case), or None."""
    return {m._meta.label_lower: m for m in cached_models()}.get(label.lower())


def clean_pk(model: type[models.Model], value: str) -> Any:
    """The pk as the ORM would take it; raises ``ValidationError`` naming the problem."""
    plan = plan_for(model)
    try:
        pk = plan.clean_pk(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    if pk is None:
        raise ValidationError("Enter a primary key.")
    plan.pk_field.run_validators(pk)  # out of the column's range: an error, not a DataError
    return pk


def model_choices() -> list[tuple[str, str]]:
    labels = sorted(m._meta.label_lower for m in cached_models())
    return [(label, label) for label in labels]


class InspectForm(forms.Form):
    """A cached model and, optionally, the pk of one of its rows.

    Only the app's own keys can be inspected: the keys are built from the model and the
    pk, never taken from the user.
    """

    model = forms.ChoiceField(label="Model")
    pk = forms.CharField(label="Primary key", required=False, max_length=255, strip=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = model_choices()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        model = cached_model(data.get("model") or "")
        data["model_class"] = model
        if model is not None and data.get("pk"):
            try:
                data["pk"] = clean_pk(model, data["pk"])
            except ValidationError as exc:
                self.add_error("pk", exc)
        return data


class ActionForm(InspectForm):
    """One of :data:`ACTIONS` on a model or a row, posted from the admin pages."""

    action = forms.ChoiceField(choices=list(ACTIONS.items()))
    next = forms.CharField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("action") == "invalidate" and data.get("pk") in (None, ""):
            self.add_error("pk", "Invalidating a row needs its primary key.")
        return data
