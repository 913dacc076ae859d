"""The mapping engine (drivers/mapping.py) on its own: defaults, the unmapped-key rule, coercion, suggestions."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from activities.outbound_record import conditions_hold
from drivers import mapping
from drivers.mapping import FieldValueError, UnmappedFieldsError, build, to_canonical, to_provider
from drivers.models import FieldInfo
from drivers.registry import DRIVERS, get_driver_class


@pytest.mark.parametrize("slug", sorted(DRIVERS))
def test_defaults_reproduce_the_drivers_built_in_names(slug: str) -> None:
    """A tenant with no overrides writes and reads exactly the names the driver's catalog declares."""
    catalog = get_driver_class(slug).default_field_catalog
    tenant = build(slug, catalog)
    assert catalog, f"{slug} declares no field catalog"
    for key, provider_field in catalog.items():
        obj, _, short = key.partition(".")
        assert to_provider(tenant, obj, {short: "v"}) == {provider_field: "v"}
        assert to_provider(tenant, obj, {key: "v"}) == {provider_field: "v"}
        # The provider's own name for a field of this object is accepted as itself.
        assert to_provider(tenant, obj, {provider_field: "v"}) == {provider_field: "v"}
        same_field = [k for k, v in catalog.items() if v == provider_field and k.startswith(f"{obj}.")]
        if len(same_field) == 1:  # unambiguous: read back under the canonical key
            assert to_canonical(tenant, obj, {provider_field: "v"}) == {key: "v"}


def test_override_writes_the_custom_field_and_reads_it_back_under_the_canonical_key() -> None:
    tenant = build("hubspot", get_driver_class("hubspot").default_field_catalog,
                   [("write", "lead.budget_max", "budget_aed"), ("read", "lead.budget_max", "budget_aed")])
    assert to_provider(tenant, "lead", {"budget_max": 900000, "last_name": "Kim"}) == {
        "budget_aed": 900000, "lastname": "Kim"}
    assert to_canonical(tenant, "lead", {"budget_aed": "900000", "hs_x": "1"}) == {
        "lead.budget_max": "900000", "hs_x": "1"}  # unmapped provider fields keep their names
    assert tenant.custom_fields() == {"lead": ["budget_aed"]}


def test_unmapped_lead_content_goes_to_the_free_text_field_and_other_objects_refuse_it() -> None:
    tenant = build("hubspot", get_driver_class("hubspot").default_field_catalog)
    payload = to_provider(tenant, "lead", {"budget_max": 500000, "lead.timeline": "3 months", "message": "Hi"})
    assert payload == {"message": "Hi\nbudget_max: 500000\ntimeline: 3 months"}
    with pytest.raises(UnmappedFieldsError) as refused:
        to_provider(tenant, "customer", {"citty": "Oslo"})
    (problem,) = refused.value.problems
    assert problem.key == "customer.citty" and problem.code == "unmapped" and "customer.city" in problem.suggestions
    assert "Oslo" not in str(refused.value)  # names, never values


def test_a_tenant_without_the_free_text_field_refuses_unmapped_lead_content() -> None:
    catalog = {k: v for k, v in get_driver_class("salesforce").default_field_catalog.items() if k != "lead.message"}
    with pytest.raises(UnmappedFieldsError) as refused:
        to_provider(build("salesforce", catalog), "lead", {"budget_max": 1})
    assert refused.value.keys == ["lead.budget_max"]


def _schema() -> dict[str, list[FieldInfo]]:
    return {"lead": [
        FieldInfo(name="budget_aed", label="Budget (AED)", type="number"),
        FieldInfo(name="property_type", label="Property Type", type="enumeration",
                  picklist_values=["Villa", "Apartment", "Townhouse"]),
        FieldInfo(name="amenities", label="Amenities", type="multipicklist", picklist_values=["Pool", "Gym"]),
        FieldInfo(name="move_in", label="Move-in", type="date"),
        FieldInfo(name="pre_approved", label="Pre-approved", type="booleancheckbox"),
    ]}


def test_values_are_coerced_by_the_introspected_type() -> None:
    tenant = build("hubspot", {"lead.message": "message"}, [
        ("write", "lead.budget_max", "budget_aed"), ("write", "lead.property_type", "property_type"),
        ("write", "lead.amenities", "amenities"), ("write", "lead.move_in", "move_in"),
        ("write", "lead.pre_approved", "pre_approved")], _schema())
    assert to_provider(tenant, "lead", {
        "budget_max": "1,250,000", "property_type": "villa", "amenities": ["gym", "Pool"],
        "move_in": datetime(2026, 3, 1, 9, tzinfo=UTC), "pre_approved": "yes"}) == {
        "budget_aed": 1250000, "property_type": "Villa", "amenities": "Gym;Pool", "move_in": "2026-03-01",
        "pre_approved": True}
    assert to_provider(tenant, "lead", {"move_in": date(2026, 4, 2)}) == {"move_in": "2026-04-02"}


def test_a_picklist_violation_and_a_type_mismatch_are_named_with_the_allowed_values() -> None:
    tenant = build("hubspot", {}, [("write", "lead.property_type", "property_type"),
                                   ("write", "lead.budget_max", "budget_aed")], _schema())
    with pytest.raises(FieldValueError) as refused:
        to_provider(tenant, "lead", {"property_type": "castle", "budget_max": "lots"})
    problems = {p.key: p for p in refused.value.problems}
    assert problems["lead.property_type"].code == "picklist"
    assert problems["lead.property_type"].allowed == ("Villa", "Apartment", "Townhouse")
    assert problems["lead.budget_max"].code == "type"
    assert "castle" not in str(refused.value) and "lots" not in str(refused.value)


def test_version_changes_with_an_override_or_the_schema() -> None:
    catalog = get_driver_class("hubspot").default_field_catalog
    base = build("hubspot", catalog)
    assert base.version == build("hubspot", dict(catalog)).version
    assert base.version != build("hubspot", catalog, [("write", "lead.budget_max", "budget_aed")]).version
    assert base.version != build("hubspot", catalog, schema=_schema()).version


def test_suggestions_rank_the_closest_names() -> None:
    assert mapping.suggest("lead.budget", ["lead.budget_max", "lead.email", "lead.city"])[0] == "lead.budget_max"
    assert mapping.suggest("Budgt_AED", ["budget_aed", "firstname"]) == ("budget_aed",)


def test_trigger_conditions_name_canonical_keys_through_the_same_mapping() -> None:
    tenant = build("hubspot", get_driver_class("hubspot").default_field_catalog,
                   [("trigger", "lead.hot", "hs_lead_score_hot")])
    names = mapping.trigger_names(tenant)
    assert names["lead.status"] == "hs_lead_status" and names["lead.hot"] == "hs_lead_score_hot"
    fields = {"hs_lead_status": "NEW", "hs_lead_score_hot": "true"}
    assert conditions_hold([{"field": "lead.status", "op": "eq", "value": "NEW"},
                            {"field": "lead.hot", "op": "eq", "value": "true"}], fields, [], names)
    assert not conditions_hold([{"field": "lead.status", "op": "eq", "value": "OPEN"}], fields, [], names)


def test_reads_come_back_as_their_introspected_types() -> None:
    tenant = build("hubspot", {}, [("read", "lead.budget_max", "budget_aed"), ("read", "lead.pre_approved",
                                                                               "pre_approved"),
                                   ("read", "lead.amenities", "amenities")], _schema())
    assert to_canonical(tenant, "lead", {"budget_aed": "1250000", "pre_approved": "true", "amenities": "Gym;Pool",
                                         "move_in": "2026-03-01", "other": "x"}) == {
        "lead.budget_max": 1250000, "lead.pre_approved": True, "lead.amenities": ["Gym", "Pool"],
        "move_in": "2026-03-01", "other": "x"}
    assert to_canonical(tenant, "lead", {"budget_aed": "not a number"}) == {"lead.budget_max": "not a number"}
