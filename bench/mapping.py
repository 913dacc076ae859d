"""The mapping engine's cost per tool call: `to_provider` of a lead (with coercion by an introspected schema,
overflow and a custom field), `to_canonical` of a record, and building a tenant's tool schemas.

Pure CPU in one process (no database, no CRM): the figures bound what the engine adds to a tool call or a
mirrored row. Prints microseconds per operation (median of rounds).

    .venv/bin/python bench/mapping.py [--iterations 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.tool_schema import tool_schemas  # noqa: E402
from drivers.hubspot import HubSpotDriver  # noqa: E402
from drivers.mapping import TenantMapping, build, to_canonical, to_provider  # noqa: E402
from drivers.models import FieldInfo  # noqa: E402


def _tenant() -> TenantMapping:
    schema = {"lead": [FieldInfo(name="hs_lead_status", label="Lead Status", type="enumeration",
                                 picklist_values=["NEW", "OPEN", "IN_PROGRESS", "CONNECTED"]),
                       FieldInfo(name="budget_aed", label="Budget (AED)", type="number"),
                       FieldInfo(name="message", label="Message", type="string"),
                       FieldInfo(name="firstname", label="First Name", type="string"),
                       FieldInfo(name="lastname", label="Last Name", type="string")]}
    return build("hubspot", HubSpotDriver.default_field_catalog,
                 [("write", "lead.budget_max", "budget_aed"), ("read", "lead.budget_max", "budget_aed")], schema)


def _per_op(fn: Callable[[], object], iterations: int, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        samples.append((time.perf_counter() - start) / iterations * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tenant = _tenant()
    lead = {"first_name": "Noor", "last_name": "Haddad", "status": "open", "budget_max": "1,250,000",
            "timeline": "3 months", "bedrooms": 3, "property_type": "villa"}
    record = {"firstname": "Noor", "lastname": "Haddad", "budget_aed": "1250000", "hs_lead_status": "OPEN",
              "message": "timeline: 3 months", "hs_object_id": "1001", "createdate": "2026-01-01T00:00:00Z"}
    rows = [
        ("to_provider (lead, 7 keys, coerced)", lambda: to_provider(tenant, "lead", lead), args.iterations),
        ("to_canonical (lead, 7 fields)", lambda: to_canonical(tenant, "lead", record), args.iterations),
        ("tool_schemas (5 tools)", lambda: tool_schemas(HubSpotDriver, tenant), args.iterations // 20),
        ("mapping version (sha256)", lambda: tenant.version, args.iterations // 20),
    ]
    print(f"{'operation':40} {'µs/op':>10}")
    for name, fn, iterations in rows:
        print(f"{name:40} {_per_op(fn, iterations, args.rounds):10.1f}")


if __name__ == "__main__":
    main()
