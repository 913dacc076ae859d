"""Salesforce Outbound Messages (declared by `SalesforceDriver.webhook_verifier`).

Salesforce signs nothing: an Outbound Message is a SOAP POST from a Flow or workflow rule
(developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_security.htm says to
check `OrganizationId`, allow Salesforce's IP ranges, require TLS, optionally its client certificate). So a
delivery is accepted only when **both** hold:
- the URL carries the tenant's secret path token (`/webhooks/crm/salesforce/{tenant}/{token}`, 32 random
  bytes we generate; compared in constant time, checked before the body is read as XML);
- the body's `OrganizationId` is the tenant's org (its first 15 characters: 15- and 18-char ids both occur).
A leaked URL is therefore a credential: rotate it by configuring a new token. There is no timestamp to bound
replays, so dedupe on `Notification/Id` carries that weight.

Salesforce retries until it receives the SOAP `Ack` (up to 24 h), so the answer is that envelope.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from drivers.webhooks import InboundEvent, WebhookRequest, WebhookVerifier, changed_names, parse_time, same

OM = "{http://soap.sforce.com/2005/09/outbound}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_OBJECTS = {"Contact": "customer", "Lead": "lead", "Case": "case", "Opportunity": "deal", "Event": "appointment"}
ACK = (b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv='
       b'"http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><notificationsResponse xmlns='
       b'"http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack></notificationsResponse></soapenv:Body>'
       b"</soapenv:Envelope>")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _notifications(body: bytes) -> ElementTree.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:  # no entity expansion, ever (billion laughs)
        raise ValueError("DTDs are not accepted")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ValueError("not XML") from exc
    found = root.find(f".//{OM}notifications")
    if found is None:
        raise ValueError("not an Outbound Message")
    return found


@dataclass
class SalesforceVerifier(WebhookVerifier):
    slug: ClassVar[str] = "salesforce"
    secret_kind: ClassVar[str] = "path_token"  # Outbound Messages carry no signature: org id + a secret URL
    ack: ClassVar[tuple[str, bytes] | None] = ("text/xml; charset=utf-8", ACK)

    def verify(self, request: WebhookRequest, secret: Mapping[str, Any], now: datetime) -> bool:
        token, org = secret.get("path_token"), secret.get("org_id")
        if not (isinstance(token, str) and token and isinstance(org, str) and len(org) >= 15):
            return False
        if not same(token, request.path_token):
            return False
        try:
            given = _notifications(request.body).findtext(f"{OM}OrganizationId") or ""
        except ValueError:
            return False
        return same(org[:15], given[:15])

    def events(self, request: WebhookRequest) -> list[InboundEvent]:
        out = []
        for note in _notifications(request.body).findall(f"{OM}Notification"):
            sobject = note.find(f"{OM}sObject")
            note_id = note.findtext(f"{OM}Id")
            if sobject is None or not note_id:
                raise ValueError("notification without id or sObject")
            type_name = sobject.get(XSI_TYPE, "").rpartition(":")[2]
            values = {_local(child.tag): (child.text or "") for child in sobject}
            created = values.get("CreatedDate")
            kind = "created" if created and created == values.get("LastModifiedDate") else "updated"
            stamp = values.get("LastModifiedDate") or created
            out.append(InboundEvent(
                event_id=note_id, event_type=f"outbound_message.{type_name}"[:64], object=_OBJECTS.get(type_name),
                external_id=values.get("Id") or None, kind=kind,  # type: ignore[arg-type]
                occurred_at=parse_time(stamp) if stamp else datetime.now().astimezone(),
                changed_fields=changed_names([k for k in values if k not in ("Id",)])))
        return out
