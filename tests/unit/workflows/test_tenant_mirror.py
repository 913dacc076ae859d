"""TenantMirrorWorkflow with a stand-in pass on the time-skipping server: it passes again while rows are due,
waits on a durable timer for rows in backoff (woken early by `wake`), sleeps out a rate limit, parks on
auth_error until `connection_fixed`, continues-as-new, and completes once nothing is unsynced."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from temporalio import activity
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.types import MirrorPassInput, MirrorPassResult
from tests.support.lifecycle import eventually
from workflows.tenant_mirror import TenantMirrorWorkflow
from workflows.types import ConnectionFixed, MirrorInput, MirrorPolicy, Wake

HOUR = timedelta(hours=1)


class Script:
    """A stand-in `mirror_pass` answering from a list of functions of the pass's `as_of`."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.passes: list[datetime] = []

    def activity(self) -> object:
        @activity.defn(name="mirror_pass")
        async def mirror_pass(input: MirrorPassInput) -> MirrorPassResult:
            assert input.as_of is not None
            self.passes.append(input.as_of)
            answer = self.answers.pop(0)
            return answer(input.as_of) if callable(answer) else answer  # type: ignore[no-any-return]

        return mirror_pass


def _timers(history: WorkflowHistory) -> list[timedelta]:
    return [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() for e in history.events
            if e.HasField("timer_started_event_attributes")]


async def _start(env: WorkflowEnvironment, task_queue: str, **options: object):  # type: ignore[no-untyped-def]
    tenant = uuid.uuid4()
    return await env.client.start_workflow(
        TenantMirrorWorkflow.run, MirrorInput(tenant_id=tenant, provider="hubspot", **options),  # type: ignore[arg-type]
        id=f"mirror:{tenant}", task_queue=task_queue)


async def test_passes_while_due_waits_for_backoff_and_completes_when_nothing_is_left(
        time_skipping_env: WorkflowEnvironment, task_queue: str) -> None:
    env = time_skipping_env
    script = Script(MirrorPassResult(synced=200, more=True, backlog=50, state="pending"),
                    lambda now: MirrorPassResult(synced=40, failed=10, backlog=10, state="retrying",
                                                 next_attempt_at=now + HOUR),
                    MirrorPassResult(synced=10))
    async with Worker(env.client, task_queue=task_queue, workflows=[TenantMirrorWorkflow],
                      activities=[script.activity()]):
        handle = await _start(env, task_queue)
        result = await handle.result()
        history = await handle.fetch_history()
    assert (result.synced, result.passes) == (250, 3)
    [timer] = _timers(history)  # one durable timer until the row in backoff is due
    assert HOUR - timedelta(minutes=1) < timer <= HOUR and script.passes[2] - script.passes[1] >= timer


async def test_a_wake_cuts_the_backoff_short(time_skipping_env: WorkflowEnvironment, task_queue: str) -> None:
    env = time_skipping_env
    script = Script(lambda now: MirrorPassResult(failed=1, backlog=1, state="retrying", next_attempt_at=now + HOUR),
                    MirrorPassResult(synced=2))
    async with Worker(env.client, task_queue=task_queue, workflows=[TenantMirrorWorkflow],
                      activities=[script.activity()]):
        with env.auto_time_skipping_disabled():
            handle = await _start(env, task_queue)
            await eventually(lambda: len(script.passes) == 1)
            assert await handle.query(TenantMirrorWorkflow.sync_state) == "retrying"
            await handle.signal(TenantMirrorWorkflow.wake, Wake())  # a new row arrived: pass now
            result = await handle.result()
    assert result.passes == 2 and script.passes[1] - script.passes[0] < HOUR


async def test_rate_limit_sleeps_and_auth_parks_until_fixed(time_skipping_env: WorkflowEnvironment,
                                                            task_queue: str) -> None:
    env = time_skipping_env
    script = Script(MirrorPassResult(more=True, backlog=5, state="pending", wait=timedelta(minutes=10)),
                    MirrorPassResult(backlog=5, state="blocked", park="auth_error"),
                    MirrorPassResult(synced=5))
    policy = MirrorPolicy(blocked_poll=timedelta(days=1))
    async with Worker(env.client, task_queue=task_queue, workflows=[TenantMirrorWorkflow],
                      activities=[script.activity()]):
        handle = await _start(env, task_queue, policy=policy)
        await eventually(lambda: len(script.passes) == 1)
        await env.sleep(timedelta(minutes=11))  # the rate limit's timer fires
        await eventually(lambda: len(script.passes) == 2)
        assert await handle.query(TenantMirrorWorkflow.sync_state) == "blocked"
        await handle.signal(TenantMirrorWorkflow.wake, Wake())  # news does not unpark: no auth storm
        await env.sleep(HOUR)
        assert len(script.passes) == 2
        await handle.signal(TenantMirrorWorkflow.connection_fixed, ConnectionFixed())
        result = await handle.result()
        history = await handle.fetch_history()
    assert result.passes == 3 and script.passes[1] - script.passes[0] >= timedelta(minutes=10)
    assert _timers(history)[0] == timedelta(minutes=10)


async def test_continues_as_new_and_carries_its_count(time_skipping_env: WorkflowEnvironment,
                                                      task_queue: str) -> None:
    env = time_skipping_env
    script = Script(*[MirrorPassResult(synced=100, more=True, backlog=1, state="pending")] * 3,
                    MirrorPassResult(synced=1))
    async with Worker(env.client, task_queue=task_queue, workflows=[TenantMirrorWorkflow],
                      activities=[script.activity()]):
        first = await _start(env, task_queue, passes_per_run=2)
        result = await first.result()  # follows the continue-as-new chain
        first_history = await env.client.get_workflow_handle(first.id, run_id=first.result_run_id).fetch_history()
    assert first_history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    assert result.synced == 301 and result.passes == 2  # passes of the last run; synced of the whole chain
