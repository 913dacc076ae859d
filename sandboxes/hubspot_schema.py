"""HubSpot portal schema for the sandbox: properties per object, search defaults, calculated phone fields.

Property shapes follow the CRM v3 properties API (`type`/`fieldType`, `calculated`, `hasUniqueValue`,
`modificationMetadata.readOnlyValue`). The two crm_sor_* properties are the unique idempotency property
and the request fingerprint that a real portal gets when the tenant connects (created by our installer).
"""

from __future__ import annotations

from typing import Any

import phonenumbers

OBJECT_TYPE_IDS = {"contacts": "0-1", "deals": "0-3", "tickets": "0-5", "notes": "0-46"}
IDEMPOTENCY_PROPERTY = "crm_sor_idempotency_key"
FINGERPRINT_PROPERTY = "crm_sor_fingerprint"

# (name, label, type, fieldType, read_only)
_COMMON = [
    ("hs_object_id", "Record ID", "number", "number", True),
    (IDEMPOTENCY_PROPERTY, "CRM-SoR idempotency key", "string", "text", False),
    (FINGERPRINT_PROPERTY, "CRM-SoR request fingerprint", "string", "text", False),
]
_PROPERTIES: dict[str, list[tuple[str, str, str, str, bool]]] = {
    "contacts": [
        ("email", "Email", "string", "text", False),
        ("firstname", "First Name", "string", "text", False),
        ("lastname", "Last Name", "string", "text", False),
        ("phone", "Phone Number", "string", "phonenumber", False),
        ("mobilephone", "Mobile Phone Number", "string", "phonenumber", False),
        ("company", "Company Name", "string", "text", False),
        ("city", "City", "string", "text", False),
        ("jobtitle", "Job Title", "string", "text", False),
        ("message", "Message", "string", "textarea", False),
        ("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", False),
        ("hs_lead_status", "Lead Status", "enumeration", "radio", False),
        ("createdate", "Create Date", "datetime", "date", True),
        ("lastmodifieddate", "Last Modified Date", "datetime", "date", True),
        ("hs_searchable_calculated_phone_number", "Calculated phone number", "string", "text", True),
        ("hs_searchable_calculated_mobile_number", "Calculated mobile number", "string", "text", True),
    ],
    "deals": [
        ("dealname", "Deal Name", "string", "text", False),
        ("amount", "Amount", "number", "number", False),
        ("dealstage", "Deal Stage", "enumeration", "radio", False),
        ("pipeline", "Pipeline", "enumeration", "select", False),
        ("closedate", "Close Date", "datetime", "date", False),
        ("description", "Deal Description", "string", "textarea", False),
        ("createdate", "Create Date", "datetime", "date", True),
        ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", True),
    ],
    "tickets": [
        ("subject", "Ticket name", "string", "text", False),
        ("content", "Ticket description", "string", "textarea", False),
        ("hs_pipeline", "Pipeline", "enumeration", "select", False),
        ("hs_pipeline_stage", "Ticket status", "enumeration", "select", False),
        ("hs_ticket_priority", "Priority", "enumeration", "select", False),
        ("createdate", "Create date", "datetime", "date", True),
        ("hs_lastmodifieddate", "Last modified date", "datetime", "date", True),
    ],
    "notes": [
        ("hs_note_body", "Note body", "string", "html", False),
        ("hs_timestamp", "Activity date", "datetime", "date", False),
        ("hs_createdate", "Created at", "datetime", "date", True),
        ("hs_lastmodifieddate", "Last modified date", "datetime", "date", True),
    ],
}

MODIFIED_PROPERTY = {
    "contacts": "lastmodifieddate",
    "deals": "hs_lastmodifieddate",
    "tickets": "hs_lastmodifieddate",
    "notes": "hs_lastmodifieddate",
}
CREATED_PROPERTY = {"contacts": "createdate", "deals": "createdate", "tickets": "createdate", "notes": "hs_createdate"}
DEFAULT_PROPERTIES = {
    "contacts": ["firstname", "lastname", "email", "lastmodifieddate", "hs_object_id", "createdate"],
    "deals": ["dealname", "amount", "closedate", "pipeline", "dealstage", "createdate", "hs_lastmodifieddate"],
    "tickets": ["subject", "content", "hs_pipeline", "hs_pipeline_stage", "createdate", "hs_lastmodifieddate"],
    "notes": ["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
}
QUERY_PROPERTIES = {
    "contacts": ["firstname", "lastname", "email", "phone", "mobilephone", "company"],
    "deals": ["dealname"],
    "tickets": ["subject", "content"],
    "notes": ["hs_note_body"],
}
REQUIRED_ON_CREATE = {"tickets": ["hs_pipeline_stage"], "notes": ["hs_timestamp"]}
UNIQUE_PROPERTIES = {IDEMPOTENCY_PROPERTY}
INSTALLER_PROPERTIES = {IDEMPOTENCY_PROPERTY, FINGERPRINT_PROPERTY}
# The properties API's type/fieldType pairs (a create with another pair is a VALIDATION_ERROR).
FIELD_TYPES = {
    "string": {"text", "textarea", "phonenumber", "html", "file"},
    "number": {"number", "calculation_equation"},
    "bool": {"booleancheckbox", "calculation_equation"},
    "date": {"date"},
    "datetime": {"date"},
    "enumeration": {"booleancheckbox", "checkbox", "radio", "select", "calculation_equation"},
    "phone_number": {"phonenumber"},
}


def property_names(object_type: str) -> set[str]:
    return {p[0] for p in [*_PROPERTIES[object_type], *_COMMON]}


def read_only(object_type: str) -> set[str]:
    return {p[0] for p in [*_PROPERTIES[object_type], *_COMMON] if p[4]}


# Enumeration options of a new portal (label, value); `options` in the properties API.
OPTIONS: dict[str, list[tuple[str, str]]] = {
    "lifecyclestage": [("Subscriber", "subscriber"), ("Lead", "lead"), ("Marketing Qualified Lead",
                       "marketingqualifiedlead"), ("Sales Qualified Lead", "salesqualifiedlead"),
                       ("Opportunity", "opportunity"), ("Customer", "customer"), ("Evangelist", "evangelist"),
                       ("Other", "other")],
    "hs_lead_status": [("New", "NEW"), ("Open", "OPEN"), ("In Progress", "IN_PROGRESS"), ("Open Deal", "OPEN_DEAL"),
                       ("Unqualified", "UNQUALIFIED"), ("Attempted to Contact", "ATTEMPTED_TO_CONTACT"),
                       ("Connected", "CONNECTED"), ("Bad Timing", "BAD_TIMING")],
    "dealstage": [("Appointment Scheduled", "appointmentscheduled"), ("Qualified To Buy", "qualifiedtobuy"),
                  ("Presentation Scheduled", "presentationscheduled"),
                  ("Decision Maker Bought-In", "decisionmakerboughtin"), ("Contract Sent", "contractsent"),
                  ("Closed Won", "closedwon"), ("Closed Lost", "closedlost")],
    "pipeline": [("Sales Pipeline", "default")],
    "hs_pipeline": [("Support Pipeline", "0")],
    "hs_pipeline_stage": [("New", "1"), ("Waiting on contact", "2"), ("Waiting on us", "3"), ("Closed", "4")],
    "hs_ticket_priority": [("Low", "LOW"), ("Medium", "MEDIUM"), ("High", "HIGH")],
}


def property_definitions(object_type: str) -> list[dict[str, Any]]:
    """The body of GET /crm/v3/properties/{objectType} `results`."""
    out = []
    for order, (name, label, type_, field_type, ro) in enumerate([*_PROPERTIES[object_type], *_COMMON]):
        out.append(
            {
                "name": name,
                "label": label,
                "type": type_,
                "fieldType": field_type,
                "description": "",
                "groupName": f"{object_type[:-1]}information",
                "options": [{"label": label, "value": value, "displayOrder": n, "hidden": False, "description": ""}
                            for n, (label, value) in enumerate(OPTIONS.get(name, []))],
                "hubspotDefined": not name.startswith("crm_sor_"),
                "displayOrder": order,
                "calculated": ro and name != "hs_object_id",
                "externalOptions": False,
                "hasUniqueValue": name in UNIQUE_PROPERTIES,
                "hidden": False,
                "modificationMetadata": {"archivable": True, "readOnlyDefinition": True, "readOnlyValue": ro},
                "formField": not ro,
            }
        )
    return out


def searchable_phone(raw: str | None, region: str = "US") -> str | None:
    """hs_searchable_calculated_*: the national number digits without the country code."""
    if not raw:
        return None
    if raw.strip().startswith("00"):  # the international prefix, whatever the portal's country dials
        raw = "+" + raw.strip()[2:]
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        digits = "".join(ch for ch in raw if ch.isdigit()).lstrip("0")
        return digits or None
    return str(number.national_number)


def property_problem(body: dict[str, Any], existing: set[str]) -> tuple[int, str, str] | None:
    """What POST /crm/v3/properties/{objectType} refuses (`PropertyCreate`: name, label, type, fieldType and
    groupName are required); None when the property can be created."""
    missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
    if missing:
        return 400, "VALIDATION_ERROR", f"Missing required fields: {', '.join(missing)}"
    if body["type"] not in FIELD_TYPES or body["fieldType"] not in FIELD_TYPES[body["type"]]:
        return 400, "VALIDATION_ERROR", f"Invalid type/fieldType combination: {body['type']}/{body['fieldType']}"
    if body["type"] == "enumeration" and not body.get("options"):
        return 400, "VALIDATION_ERROR", "Enumeration properties need options"
    if body["name"] in existing:
        return 409, "OBJECT_ALREADY_EXISTS", f"A property named '{body['name']}' already exists."
    return None


def custom_property(object_type: str, body: dict[str, Any]) -> dict[str, Any]:
    """The `Property` a create answers with (and the properties list shows from then on)."""
    options = [{"label": o.get("label", o["value"]), "value": o["value"], "displayOrder": o.get("displayOrder", n),
                "hidden": bool(o.get("hidden", False)), "description": o.get("description", "")}
               for n, o in enumerate(body.get("options") or [])]
    return {"name": body["name"], "label": body["label"], "type": body["type"], "fieldType": body["fieldType"],
            "description": body.get("description", ""), "groupName": body["groupName"], "options": options,
            "hubspotDefined": False, "displayOrder": body.get("displayOrder", -1), "calculated": False,
            "externalOptions": False, "hasUniqueValue": bool(body.get("hasUniqueValue", False)),
            "hidden": bool(body.get("hidden", False)), "formField": bool(body.get("formField", False)),
            "modificationMetadata": {"archivable": True, "readOnlyDefinition": False, "readOnlyValue": False},
            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"}
