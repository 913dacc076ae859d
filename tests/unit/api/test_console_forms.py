"""The console's credential inputs come from each driver's declared form, and posted values go back to it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.console import forms
from drivers.registry import credential_forms, get_driver_class


@pytest.mark.parametrize("slug", sorted(credential_forms()))
def test_every_declared_form_draws_its_fields_with_secrets_masked(slug: str) -> None:
    form = credential_forms()[slug]
    specs = {spec.name: spec for spec in forms.fields_of(form)}
    assert set(specs) == set(form.model_fields)
    for name, info in form.model_fields.items():
        assert specs[name].required == info.is_required()
        if "secret" in name or "password" in name:
            assert specs[name].kind == "password", name
    # Whatever an operator leaves empty, the driver's model decides (a 422 message), never a crash here.
    body, problems = forms.body_from(form, {})
    assert problems == []
    try:
        form.model_validate(body)
    except ValidationError:
        pass


def test_athenahealth_environment_is_a_choice_and_the_values_round_trip() -> None:
    form = get_driver_class("athenahealth").credential_form
    assert form is not None
    specs = {spec.name: spec for spec in forms.fields_of(form)}
    assert specs["environment"].kind == "select" and specs["environment"].options == ("preview", "production")
    assert specs["environment"].default == "production" and specs["practice_id"].kind == "text"
    posted = {"field_client_id": "client-1234", "field_client_secret": "s3cret-value", "field_practice_id": " 195900 ",
              "field_environment": "preview"}
    body, problems = forms.body_from(form, posted)
    assert problems == [] and form.model_validate(body).settings() == {"practice_id": "195900",
                                                                       "environment": "preview"}
    assert forms.kept_values(form, posted) == {"client_id": "client-1234", "practice_id": " 195900 ",
                                               "environment": "preview"}  # the secret is not kept


def test_numbers_and_nested_settings_are_read_as_such() -> None:
    tekmetric = get_driver_class("tekmetric").credential_form
    assert tekmetric is not None
    assert {s.name: s.kind for s in forms.fields_of(tekmetric)}["shop_id"] == "number"
    body, problems = forms.body_from(tekmetric, {"field_shop_id": "12"})
    assert problems == [] and body["shop_id"] == 12
    generic = get_driver_class("generic_rest").credential_form
    assert generic is not None
    assert {s.name: s.kind for s in forms.fields_of(generic)}["auth"] == "json"
    _, problems = forms.body_from(generic, {"field_auth": "{not json"})
    assert problems == ["Auth: not valid JSON"]
