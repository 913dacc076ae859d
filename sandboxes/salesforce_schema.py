"""Salesforce org schema for the sandbox: sObject describe metadata, id prefixes, create defaults.

Field flags follow the REST `describe` resource (`nillable`, `createable`, `updateable`,
`defaultedOnCreate`, `externalId`, `unique`); "required on create" is derived from them the way Salesforce
clients do. `CrmSorKey__c` (External ID, unique) and `CrmSorFingerprint__c` are the two custom fields our
installer adds to each object we upsert into.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse

EXTERNAL_ID_FIELD = "CrmSorKey__c"
FINGERPRINT_FIELD = "CrmSorFingerprint__c"
INSTALLER_FIELDS = (EXTERNAL_ID_FIELD, FINGERPRINT_FIELD)
# Tooling API CustomField Metadata.type -> the describe type the field then has.
TOOLING_TYPES = {"Text": "string", "Number": "double", "Checkbox": "boolean", "Date": "date",
                 "DateTime": "datetime", "Email": "email", "Phone": "phone", "Currency": "currency",
                 "LongTextArea": "textarea", "Picklist": "picklist"}

ID_PREFIX = {"Contact": "003", "Lead": "00Q", "Opportunity": "006", "Case": "500", "Task": "00T", "Event": "00U"}

# name -> (type, flags); flags: r=required on create, o=read-only, d=defaulted on create, x=external id
_SYSTEM = {
    "Id": ("id", "o"),
    "IsDeleted": ("boolean", "o"),
    "OwnerId": ("reference", "d"),
    "CreatedDate": ("datetime", "o"),
    "LastModifiedDate": ("datetime", "o"),
    "SystemModstamp": ("datetime", "o"),
    EXTERNAL_ID_FIELD: ("string", "x"),
    FINGERPRINT_FIELD: ("string", ""),
}
_FIELDS: dict[str, dict[str, tuple[str, str]]] = {
    "Contact": {
        "FirstName": ("string", ""),
        "LastName": ("string", "r"),
        "Name": ("string", "o"),
        "Email": ("email", ""),
        "Phone": ("phone", ""),
        "MobilePhone": ("phone", ""),
        "Title": ("string", ""),
        "MailingCity": ("string", ""),
        "AccountId": ("reference", ""),
        "LeadSource": ("picklist", ""),
        "Description": ("textarea", ""),
    },
    "Lead": {
        "FirstName": ("string", ""),
        "LastName": ("string", "r"),
        "Name": ("string", "o"),
        "Company": ("string", "r"),
        "Email": ("email", ""),
        "Phone": ("phone", ""),
        "MobilePhone": ("phone", ""),
        "Status": ("picklist", "d"),
        "LeadSource": ("picklist", ""),
        "City": ("string", ""),
        "AnnualRevenue": ("currency", ""),
        "Description": ("textarea", ""),
    },
    "Opportunity": {
        "Name": ("string", "r"),
        "StageName": ("picklist", "r"),
        "CloseDate": ("date", "r"),
        "Amount": ("currency", ""),
        "Type": ("picklist", ""),
        "LeadSource": ("picklist", ""),
        "AccountId": ("reference", ""),
        "Description": ("textarea", ""),
    },
    "Case": {
        "CaseNumber": ("string", "o"),
        "Subject": ("string", ""),
        "Description": ("textarea", ""),
        "Status": ("picklist", "d"),
        "Priority": ("picklist", "d"),
        "Origin": ("picklist", ""),
        "ContactId": ("reference", ""),
    },
    "Task": {
        "Subject": ("combobox", ""),
        "Description": ("textarea", ""),
        "Status": ("picklist", "d"),
        "Priority": ("picklist", "d"),
        "WhoId": ("reference", ""),
        "WhatId": ("reference", ""),
        "ActivityDate": ("date", ""),
        "TaskSubtype": ("picklist", ""),
    },
    "Event": {
        "Subject": ("combobox", ""),
        "Description": ("textarea", ""),
        "ActivityDateTime": ("datetime", ""),
        "DurationInMinutes": ("int", ""),
        "Location": ("string", ""),
        "WhoId": ("reference", ""),
    },
}
DEFAULTS = {
    "Lead": {"Status": "Open - Not Contacted"},
    "Case": {"Status": "New", "Priority": "Medium"},
    "Task": {"Status": "Not Started", "Priority": "Normal"},
}
# Standard picklist values of a new org (Setup → Object Manager → Fields); the first is the default where the
# field is defaulted on create.
PICKLISTS: dict[tuple[str, str], list[str]] = {
    ("Lead", "Status"): ["Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"],
    ("Opportunity", "StageName"): ["Prospecting", "Qualification", "Needs Analysis", "Value Proposition",
                                   "Id. Decision Makers", "Perception Analysis", "Proposal/Price Quote",
                                   "Negotiation/Review", "Closed Won", "Closed Lost"],
    ("Opportunity", "Type"): ["Existing Customer - Upgrade", "Existing Customer - Replacement",
                              "Existing Customer - Downgrade", "New Customer"],
    ("Case", "Status"): ["New", "Working", "Escalated", "Closed"],
    ("Case", "Priority"): ["Medium", "High", "Low"],
    ("Case", "Origin"): ["Phone", "Email", "Web"],
    ("Task", "Status"): ["Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"],
    ("Task", "Priority"): ["Normal", "High", "Low"],
    ("Task", "TaskSubtype"): ["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"],
    ("Task", "Subject"): ["Call", "Send Letter", "Send Quote", "Other"],
    ("Event", "Subject"): ["Call", "Email", "Meeting", "Send Letter/Quote", "Other"],
}
for _sobject in ("Contact", "Lead", "Opportunity"):
    PICKLISTS[(_sobject, "LeadSource")] = ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]
# Polymorphic lookups name several targets (WhoId: a Contact or a Lead).
REFERENCES: dict[str, list[str]] = {"OwnerId": ["User"], "AccountId": ["Account"], "ContactId": ["Contact"],
                                    "WhoId": ["Contact", "Lead"], "WhatId": ["Account", "Opportunity", "Case"]}
NAME_FIELDS = {"Name", "FirstName", "LastName", "Subject", "Company"}
TEXT_TYPES = {"string", "email", "phone", "textarea", "combobox", "picklist"}


def fields_of(sobject: str) -> dict[str, tuple[str, str]]:
    return {**_FIELDS[sobject], **_SYSTEM}


def describe(sobject: str, api_version: str, fields: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """The body of GET /sobjects/{sobject}/describe (the parts clients read); `fields`: the org's own."""
    out = []
    for name, (type_, flags) in (fields if fields is not None else fields_of(sobject)).items():
        ro = "o" in flags
        out.append(
            {
                "name": name,
                "label": name.removesuffix("__c").replace("_", " "),
                "type": type_,
                "nillable": "r" not in flags and type_ != "boolean" and name != "Id",
                "createable": not ro,
                "updateable": not ro,
                "defaultedOnCreate": "d" in flags or name in ("Id", "IsDeleted"),
                "calculated": name in ("Name",),
                "externalId": "x" in flags,
                "unique": "x" in flags,
                "idLookup": "x" in flags or name in ("Id", "Email"),
                "custom": name.endswith("__c"),
                "length": 255 if type_ in TEXT_TYPES else 0,
                "picklistValues": _picklist(sobject, name, "d" in flags),
                "referenceTo": REFERENCES.get(name, []) if type_ == "reference" else [],
                "relationshipName": name.removesuffix("Id") if type_ == "reference" else None,
                "restrictedPicklist": False,
            }
        )
    return {
        "name": sobject,
        "label": sobject,
        "keyPrefix": ID_PREFIX[sobject],
        "createable": True,
        "updateable": True,
        "deletable": True,
        "queryable": True,
        "searchable": True,
        "fields": out,
        "urls": {"describe": f"/services/data/{api_version}/sobjects/{sobject}/describe"},
    }


def _picklist(sobject: str, name: str, defaulted: bool) -> list[dict[str, Any]]:
    values = PICKLISTS.get((sobject, name), [])
    return [{"active": True, "defaultValue": defaulted and n == 0, "label": value, "validFor": None, "value": value}
            for n, value in enumerate(values)]


def canonical_sobject(name: str) -> str | None:
    """The sObject's API name for `name` in any letter case (Salesforce names are case-insensitive)."""
    return next((known for known in ID_PREFIX if known.lower() == name.lower()), None)


def canonical_field(sobject: str, name: str) -> str | None:
    return next((known for known in fields_of(sobject) if known.lower() == name.lower()), None)


_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def full_id(record_id: str) -> str | None:
    """The 18-character form of a 15- or 18-character record id (case-safe suffix), else None.

    Salesforce ids are case-sensitive in 15 characters; the three suffix characters encode, for each 5-char
    chunk, which characters are upper case, so the 18-character form survives case-insensitive tools.
    """
    if len(record_id) not in (15, 18) or not record_id.isalnum() or not record_id.isascii():
        return None
    base = record_id[:15]
    suffix = "".join(_SUFFIX[sum(1 << i for i, ch in enumerate(base[c:c + 5]) if ch.isupper())] for c in (0, 5, 10))
    if len(record_id) == 18 and record_id[15:].upper() != suffix:
        return None
    return base + suffix


def required(sobject: str) -> list[str]:
    return [name for name, (_, flags) in _FIELDS[sobject].items() if "r" in flags]


def read_only(sobject: str) -> set[str]:
    return {name for name, (_, flags) in fields_of(sobject).items() if "o" in flags}


def tooling_field(body: Any, known: Callable[[str], dict[str, tuple[str, str]]]
                  ) -> tuple[str, str, tuple[str, str]] | JSONResponse:
    """(sObject, field, (type, flags)) a Tooling CustomField create makes, or its error answer."""
    def refuse(code: str, message: str) -> JSONResponse:
        return JSONResponse([{"message": message, "errorCode": code, "fields": []}], status_code=400)

    full = str((body or {}).get("FullName") or "") if isinstance(body, dict) else ""
    metadata = body.get("Metadata") if isinstance(body, dict) else None
    sobject, _, name = full.partition(".")
    if not isinstance(metadata, dict) or not name.endswith("__c") or not metadata.get("label"):
        return refuse("INVALID_INPUT", "FullName (Object.Field__c) and Metadata with a label are required")
    if sobject != "Activity" and sobject not in ID_PREFIX:
        return refuse("INVALID_INPUT", f"Cannot find entity: {sobject}")
    kind = TOOLING_TYPES.get(str(metadata.get("type")))
    if kind is None:
        return refuse("FIELD_INTEGRITY_EXCEPTION", f"Invalid field type: {metadata.get('type')}")
    if kind == "string" and not 0 < int(metadata.get("length") or 0) <= 255:
        return refuse("FIELD_INTEGRITY_EXCEPTION", "Length must be between 1 and 255")
    target = "Task" if sobject == "Activity" else sobject
    if name in known(target):
        return refuse("DUPLICATE_DEVELOPER_NAME", "Duplicate Developer Name")
    return sobject, name, (kind, "x" if metadata.get("externalId") else "")
