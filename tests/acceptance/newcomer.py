"""The first hour, black-box: what a newcomer does with a fresh clone, following the README.

    python3 tests/acceptance/newcomer.py                 # clone, install as the README says, run everything
    python3 tests/acceptance/newcomer.py --venv .venv    # reuse an installed venv (faster; the clone's code runs)

1. `git clone` this repository into a temporary directory.
2. README command 1: `python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/crm-sor dev`, in the
   background (free ports through the documented settings, so it can run beside anything else).
3. The demo: run the printed curl exactly as printed; its row becomes `synced`.
4. `crm-sor tenant create`, then `crm-sor tenant connect TENANT --sandbox` (the documented one line).
5. Record a conversation as that tenant's agent; wait until the CRM holds it.
6. Restart `crm-sor dev` (Ctrl-C, start again): the sandbox CRM still holds the contact and transcript note.
7. Erase the subject with an operator token: outcomes say `deleted` (HubSpot GDPR delete of the contact) and
   `archived` (the note: HubSpot keeps it 90 days, readable with archived=true), and the erased strings are in
   neither our SQLite files nor Temporal's.
8. Ctrl-C: the stack stops cleanly.

Standard library only, so it runs on a machine with nothing but Python and git. Exit status 0 when every step
held; otherwise the failing step, and the tail of the `crm-sor dev` log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SANDBOX_COUNT = 10  # sandboxes/serve.py SANDBOXES: the dev stack takes base+1 … base+count


class StepFailed(AssertionError):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise StepFailed(what)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_block(size: int) -> int:
    for _ in range(100):
        base = free_port()
        if base + size < 65_000 and all(_bindable(base + n) for n in range(1, size + 1)):
            return base
    raise RuntimeError("no free block of ports")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http(method: str, url: str, *, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def eventually(what: str, probe: Any, within: float = 90.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StepFailed(f"timed out: {what}")
        time.sleep(0.5)


class Newcomer:
    def __init__(self, clone: Path, env: dict[str, str]) -> None:
        self.clone, self.env = clone, env
        self.dev: subprocess.Popen[bytes] | None = None
        self.log = clone / "crm-sor-dev.log"
        self.api = f"http://127.0.0.1:{env['CRM_API__PORT']}"

    def sh(self, command: str) -> str:
        """A README line, run as written from the clone (bash, the clone's venv)."""
        done = subprocess.run(["bash", "-c", command], cwd=self.clone, env=self.env, capture_output=True,
                              text=True, timeout=120)
        check(done.returncode == 0, f"`{command}` failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return done.stdout

    def start_dev(self, within: float = 300.0) -> list[str]:
        """`.venv/bin/crm-sor dev` in the background; the lines it printed once up."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.dev = subprocess.Popen([".venv/bin/crm-sor", "dev"], cwd=self.clone, env=self.env, stdout=out,
                                        stderr=subprocess.STDOUT)

        def up() -> list[str] | None:
            check(self.dev is not None and self.dev.poll() is None, "crm-sor dev exited during start-up")
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            return text.splitlines() if "Ctrl-C stops everything." in text else None

        return list(eventually("crm-sor dev is up", up, within))

    def stop_dev(self) -> None:
        """Ctrl-C, as in a terminal."""
        assert self.dev is not None
        self.dev.send_signal(signal.SIGINT)
        code = self.dev.wait(timeout=90)
        check(code == 0, f"crm-sor dev exited with {code} after Ctrl-C")
        check("crm-sor dev stopped" in self.log.read_text(errors="replace"), "no clean stop message")
        self.dev = None

    def kill_dev(self) -> None:
        if self.dev is not None and self.dev.poll() is None:
            self.dev.send_signal(signal.SIGINT)
            try:
                self.dev.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.dev.kill()
        pid_file = self.clone / ".crm-sor" / "temporal.pid"
        if pid_file.exists():  # the Temporal dev server this run started, should the stack have died
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass

    def record(self, token: str) -> dict[str, Any]:
        status, body = http("POST", f"{self.api}/api/agent/conversations", token=token, body=CONVERSATION)
        check(status == 201, f"recording a conversation answered {status}: {body}")
        return dict(body)

    def synced(self, token: str, table: str, row_id: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status, body = http("GET", f"{self.api}/api/agent/records/{table}/{row_id}", token=token)
            return body if status == 200 and body["sync_state"] == "synced" else None

        return dict(eventually(f"{table} {row_id} synced", probe))


MARK = uuid.uuid4().hex[:10]
NAME, EMAIL, PHONE = f"Grace Hopper{MARK}", f"grace.{MARK}@example.com", "+1 415 555 0199"
TRANSCRIPT = f"I would like a viewing, reference {MARK}"
CONVERSATION = {"customer": {"name": NAME, "phone": PHONE, "email": EMAIL}, "channel": "voice",
                "messages": [{"turn_id": "1", "role": "customer", "text": TRANSCRIPT},
                             {"turn_id": "2", "role": "agent", "text": "Of course."}]}


def run(source: Path, workdir: Path, venv: Path | None) -> None:
    clone = workdir / "crm-sor"
    subprocess.run(["git", "clone", "--quiet", str(source), str(clone)], check=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("CRM_")}
    env |= {"CRM_API__PORT": str(free_port()), "CRM_TEMPORAL__ADDRESS": f"127.0.0.1:{free_port()}",
            "CRM_TEMPORAL__UI_PORT": str(free_port()), "CRM_DEV__SANDBOX_PORT_BASE": str(free_block(SANDBOX_COUNT))}
    if os.environ.get("CRM_TEST_REDIS_URL"):  # the test command's Redis database, not the machine's db 0
        env["CRM_REDIS_URL"] = os.environ["CRM_TEST_REDIS_URL"]
    if venv is not None:  # reuse an installed venv; the clone's own code is what runs
        (clone / ".venv").symlink_to(venv.resolve())
        env["PYTHONPATH"] = str(clone)
    else:  # README command 1's install part, as written
        subprocess.run(["bash", "-c", "python3 -m venv .venv && .venv/bin/pip install --quiet -e ."], cwd=clone,
                       env=env, check=True)
    me = Newcomer(clone, env)
    try:
        steps(me)
    except BaseException:
        if me.log.exists():
            print("---- crm-sor dev log (tail) ----\n" + me.log.read_text(errors="replace")[-6000:], file=sys.stderr)
        raise
    finally:
        me.kill_dev()


def steps(me: Newcomer) -> None:
    lines = me.start_dev()
    print("1. crm-sor dev is up (first start)")
    check(any(".crm-sor/sandboxes" in line for line in lines), "dev does not say where sandbox state is kept")

    # The demo: the printed curl, exactly as printed.
    curl = next(line.strip() for line in lines if line.strip().startswith("curl -s -X POST"))
    demo = json.loads(me.sh(curl))
    check(demo["sync_state"] == "pending" and demo["messages"] == 3, f"demo answer: {demo}")
    demo_token = shlex.split(curl)[shlex.split(curl).index("-H") + 1].removeprefix("Authorization: Bearer ")
    me.synced(demo_token, "conversations", demo["id"])
    print("2. the demo conversation reached the sandbox CRM")

    created = me.sh('.venv/bin/crm-sor tenant create --name "Acme Realty" --provider hubspot')
    tenant = re.search(r"tenant ([0-9a-f-]{36}) created", created)
    check(tenant is not None, f"tenant create said: {created}")
    tenant_id = tenant.group(1)  # type: ignore[union-attr]
    connected = me.sh(f".venv/bin/crm-sor tenant connect {tenant_id} --sandbox")
    check("active" in connected, f"tenant connect said: {connected}")
    agent = me.sh(f".venv/bin/crm-sor token --role agent --tenant {tenant_id}").strip()
    print("3. a new tenant is connected to the HubSpot sandbox with one command")

    answer = me.record(agent)
    conversation = me.synced(agent, "conversations", answer["id"])
    customer = me.synced(agent, "customers", answer["customer_id"])
    note_id, contact_id = conversation["crm_external_id"], customer["crm_external_id"]
    print("4. its conversation is in the CRM")

    me.stop_dev()
    lines = me.start_dev(within=180)
    print("5. crm-sor dev restarted")
    sandbox = json.loads((me.clone / ".crm-sor" / "sandboxes.json").read_text())["hubspot"]
    crm, crm_token = sandbox["base_url"], sandbox["secret"]["access_token"]
    status, note = http("GET", f"{crm}/crm/v3/objects/notes/{note_id}?properties=hs_note_body", token=crm_token)
    check(status == 200 and TRANSCRIPT in note["properties"]["hs_note_body"], f"note after restart: {status}")
    status, _ = http("GET", f"{crm}/crm/v3/objects/contacts/{contact_id}", token=crm_token)
    check(status == 200, f"contact after restart: {status}")
    me.synced(agent, "conversations", answer["id"])  # and our row still agrees
    print("6. after the restart the sandbox CRM still holds the contact and the transcript")

    operator = me.sh(f".venv/bin/crm-sor token --role operator --tenant {tenant_id}").strip()
    status, accepted = http("POST", f"{me.api}/api/tenant/forget", token=operator, body={"email": EMAIL})
    check(status == 202, f"forget answered {status}: {accepted}")

    def finished() -> dict[str, Any] | None:
        code, body = http("GET", f"{me.api}/api/tenant/forget/{accepted['request_id']}", token=operator)
        return body if code == 200 and body["status"] != "running" else None

    erasure = eventually("the erasure finished", finished, 120)
    outcomes = {(o["object"], o["external_id"]): o for o in erasure["outcomes"]}
    check(erasure["status"] == "completed", f"erasure: {erasure['status']} {erasure['outcomes']}")
    contact = outcomes[("customer", contact_id)]
    check(contact["outcome"] == "deleted" and contact["hard_deleted"] is True, f"contact outcome: {contact}")
    note_outcome = outcomes[("note", note_id)]
    check(note_outcome["outcome"] == "archived" and note_outcome["provider_purge_after"] is not None,
          f"note outcome: {note_outcome}")
    status, _ = http("GET", f"{crm}/crm/v3/objects/contacts/{contact_id}?archived=true", token=crm_token)
    check(status == 404, "the GDPR-deleted contact is still readable")
    status, _ = http("GET", f"{crm}/crm/v3/objects/notes/{note_id}", token=crm_token)
    check(status == 404, "the archived note is still live")
    status, _ = http("GET", f"{crm}/crm/v3/objects/notes/{note_id}?archived=true", token=crm_token)
    check(status == 200, "the archived note should be readable with archived=true, as the outcome says")
    status, _ = http("GET", f"{me.api}/api/agent/records/conversations/{answer['id']}", token=agent)
    check(status == 404, "the local conversation row survived the erasure")
    state = me.clone / ".crm-sor"
    for path in [state / "crm-sor.db", state / "crm-sor.db-wal", state / "temporal.db", state / "temporal.db-wal"]:
        if path.exists():
            data = path.read_bytes()
            for value in (NAME, EMAIL, TRANSCRIPT):
                check(value.encode() not in data, f"{value!r} is still in {path.name}")
    print("7. erased: the contact deleted, the note archived (as reported), no trace in our files")

    me.stop_dev()
    print("8. Ctrl-C stopped everything")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO, help="the repository to clone (default: this one)")
    parser.add_argument("--venv", type=Path, help="reuse this installed venv instead of `pip install -e .`")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="crm-sor-newcomer-"))
    started = time.monotonic()
    try:
        run(args.source, workdir, args.venv)
    except StepFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    print(f"newcomer acceptance passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
