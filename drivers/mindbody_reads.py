"""Mindbody reads shared by the driver's verbs: client pages (offset, and keyset on modification), one client,
appointments and contact logs, and booking under a key. Split from drivers/mindbody.py to keep modules small.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from drivers.base import BaseDriver, CreateResult
from drivers.errors import NotFoundError
from drivers.hosted import int_id, key_reused
from drivers.text import batch_marker

_MAX_PAGE = 200
_WINDOW = timedelta(days=366)  # appointments have no modified-since filter: searches read this far each way


def client_rssid(idempotency_key: str) -> str:
    """The client ID (RSSID) a create under this key gets: Mindbody's only client field it can look up by."""
    return "crm-" + batch_marker(idempotency_key)[9:25]


class MindbodyReads(BaseDriver):
    """Reads of one site's clients, appointments and contact logs."""

    async def _clients(self, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """Follow offsets; the on-or-after boundary and page shifts can repeat a client: keep each once."""
        seen: dict[str, dict[str, Any]] = {}
        offset = 0
        while len(seen) < limit:
            page = params | {"request.limit": min(_MAX_PAGE, limit - len(seen)), "request.offset": offset}
            body = await self._request_json("GET", "/client/clients", params=page)
            clients, paging = body.get("Clients") or [], body.get("PaginationResponse") or {}
            for client in clients:
                seen.setdefault(str(client["Id"]), client)
            offset += len(clients)
            if not clients or offset >= int(paging.get("TotalResults") or 0):
                break
        return list(seen.values())[:limit]

    async def _modified_since(self, since: str, limit: int) -> list[dict[str, Any]]:
        """Keyset paging on `lastModifiedDate`: a plain offset skips a client that is modified (and so moves to
        the end) mid-listing. Each page restarts at the last modification seen, skipping the clients already
        read at exactly that instant; on-or-after makes boundaries repeat, so clients are kept once (newest)."""
        seen: dict[str, dict[str, Any]] = {}
        cursor, offset = since, 0
        while len(seen) < limit:
            size = min(_MAX_PAGE, limit - len(seen) + offset)
            page = {"request.lastModifiedDate": cursor, "request.limit": size, "request.offset": offset}
            body = await self._request_json("GET", "/client/clients", params=page)
            clients = body.get("Clients") or []
            total = int((body.get("PaginationResponse") or {}).get("TotalResults") or 0)
            for client in clients:
                seen.pop(str(client["Id"]), None)
                seen[str(client["Id"])] = client
            if not clients or offset + len(clients) >= total:
                break
            last = str(clients[-1].get("LastModifiedDateTime") or cursor)
            at_last = sum(1 for c in clients if c.get("LastModifiedDateTime") == last)
            cursor, offset = (last, at_last) if last != cursor else (cursor, offset + len(clients))
        return list(seen.values())[:limit]

    async def _client(self, external_id: str) -> dict[str, Any]:
        found = await self._clients({"request.clientIDs": external_id}, 1)
        if not found:
            raise NotFoundError("no such client", provider=self.slug, status_code=404)
        return found[0]

    async def _appointment(self, external_id: str) -> dict[str, Any]:
        params = {"request.appointmentIds": int_id(external_id, self.slug)}
        found = (await self._request_json("GET", "/appointment/staffappointments", params=params))["Appointments"]
        if not found:
            raise NotFoundError("no such appointment", provider=self.slug, status_code=404)
        return dict(found[0])

    async def _appointments_of(self, client_id: str) -> list[dict[str, Any]]:
        today = datetime.now(UTC)
        params = {"request.clientId": client_id, "request.startDate": (today - _WINDOW).date().isoformat(),
                  "request.endDate": (today + _WINDOW).date().isoformat(), "request.limit": _MAX_PAGE}
        return list((await self._request_json("GET", "/appointment/staffappointments", params=params))["Appointments"])

    async def _logs(self, client_id: str) -> list[dict[str, Any]]:
        params = {"request.clientId": client_id, "request.limit": _MAX_PAGE}
        return list((await self._request_json("GET", "/client/contactlogs", params=params))["ContactLogs"])

    async def _log(self, note_external_id: str) -> tuple[str, dict[str, Any]]:
        client_id, _, log_id = note_external_id.rpartition(":")
        for log in await self._logs(client_id) if client_id else []:
            if str(log["Id"]) == log_id:
                return client_id, log
        raise NotFoundError("no such contact log", provider=self.slug, status_code=404)

    async def _book(self, fields: dict[str, Any], key: str) -> CreateResult:
        partner_key = client_rssid(key)
        if fields.get("ClientId"):
            for row in await self._appointments_of(str(fields["ClientId"])):
                if row.get("PartnerExternalId") == partner_key:
                    if str(row.get("StartDateTime"))[:16] != str(fields.get("StartDateTime"))[:16]:
                        raise key_reused(self.slug, str(row["Id"]))
                    return CreateResult(external_id=str(row["Id"]), created=False)
        booked = await self._request_json("POST", "/appointment/addappointment",
                                          json=fields | {"PartnerExternalId": partner_key})
        return CreateResult(external_id=str(booked["Appointment"]["Id"]))
