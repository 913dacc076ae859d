"""HTML inputs generated from a driver's `CredentialForm` (drivers/provider.py), and the posted values back.

The driver's pydantic model stays the one declaration of what a provider needs: the console reads its fields
(type, required, description, allowed values) to draw inputs, and hands the posted values to the same
`Connector.connect_form` the JSON route uses, so validation happens in one place.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from drivers.provider import CredentialForm

# Secret fields are never put back into a re-rendered page; names give away the ones typed as plain `str`.
_SECRET_WORDS = ("secret", "password", "token", "api_key", "key")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    kind: str  # text | password | number | select | checkbox | json
    required: bool
    options: tuple[str, ...] = ()
    default: str = ""
    help: str = ""


def _args(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    return (annotation,)


def _kind(name: str, annotation: Any, public: frozenset[str]) -> tuple[str, tuple[str, ...]]:
    [first, *rest] = _args(annotation) or (str,)
    if rest:  # a union of models (one of several auth shapes): JSON
        return "json", ()
    if typing.get_origin(first) is typing.Annotated:
        first = typing.get_args(first)[0]
    if typing.get_origin(first) is Literal:
        return "select", tuple(str(v) for v in typing.get_args(first))
    if first is SecretStr or (name not in public and any(word in name for word in _SECRET_WORDS)):
        return "password", ()
    if first is bool:
        return "checkbox", ()
    if first is int:
        return "number", ()
    if first is str:
        return "text", ()
    return "json", ()  # lists, dicts and nested models


def fields_of(form: type[CredentialForm]) -> list[FieldSpec]:
    specs = []
    for name, info in form.model_fields.items():
        kind, options = _kind(name, info.annotation, form.public_fields)
        specs.append(FieldSpec(name=name, label=name.replace("_", " ").capitalize(), kind=kind,
                               required=info.is_required(), options=options, default=_default(info, kind),
                               help=info.description or ""))
    return specs


def _default(info: FieldInfo, kind: str) -> str:
    value = info.get_default(call_default_factory=True) if not info.is_required() else None
    if value is None or kind == "password":
        return ""
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json"))
    if kind == "json":
        return json.dumps(value)
    return str(value)


def body_from(form: type[CredentialForm], posted: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The JSON body the connect flow validates, from posted strings; plus problems reading JSON fields."""
    body: dict[str, Any] = {}
    problems: list[str] = []
    for spec in fields_of(form):
        raw = posted.get(f"field_{spec.name}", "")
        if spec.kind == "checkbox":
            body[spec.name] = raw == "on"
        elif raw.strip() == "":
            continue  # left empty: the model's default applies, or its "field required" message
        elif spec.kind == "number":
            try:
                body[spec.name] = int(raw)
            except ValueError:
                problems.append(f"{spec.label}: a whole number is needed")
        elif spec.kind == "json":
            try:
                body[spec.name] = json.loads(raw)
            except ValueError:
                problems.append(f"{spec.label}: not valid JSON")
        else:
            body[spec.name] = raw.strip() if spec.kind != "password" else raw
    return body, problems


def kept_values(form: type[CredentialForm], posted: dict[str, str]) -> dict[str, str]:
    """What to put back into the form after an error: everything typed except secrets."""
    return {spec.name: posted.get(f"field_{spec.name}", "") for spec in fields_of(form) if spec.kind != "password"}
