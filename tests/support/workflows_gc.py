"""Workflows for the gc end-to-end tests: every way a payload ends up referenced.

Imports nothing from boto or casstore's storage code, so the workflow sandbox
accepts this module.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.workflow import ParentClosePolicy

_TIMEOUT = timedelta(seconds=30)


@activity.defn
async def shout(text: str) -> str:
    """Return the text in capitals (a distinct activity result)."""
    return text.upper()


@workflow.defn
class Finishes:
    """Hands its input to an activity and returns the result."""

    @workflow.run
    async def run(self, text: str) -> str:
        """Return the activity's result."""
        return await workflow.execute_activity(shout, text, start_to_close_timeout=_TIMEOUT)


@workflow.defn
class Sleeps:
    """Runs an activity, then sleeps far longer than any test."""

    @workflow.run
    async def run(self, text: str) -> str:
        """Never returns within a test."""
        result = await workflow.execute_activity(shout, text, start_to_close_timeout=_TIMEOUT)
        await workflow.sleep(timedelta(hours=1))
        return result


@workflow.defn
class Holds:
    """Keeps its input in history and waits, doing nothing else."""

    @workflow.run
    async def run(self, text: str) -> str:
        """Never returns within a test."""
        await workflow.wait_condition(lambda: False)
        return text


@workflow.defn
class AbandonedChild:
    """Waits for ``go``, then returns: after its parent closed, when abandoned."""

    def __init__(self) -> None:
        self._go = False

    @workflow.signal
    def go(self) -> None:
        """Let the child finish."""
        self._go = True

    @workflow.run
    async def run(self, text: str) -> str:
        """Return a result derived from the input."""
        await workflow.wait_condition(lambda: self._go)
        return f"child finished with {text}"


@workflow.defn
class AbandoningParent:
    """Starts a child it abandons, and closes at once."""

    @workflow.run
    async def run(self, text: str, child_id: str) -> str:
        """Return as soon as the child has started."""
        await workflow.start_child_workflow(
            AbandonedChild.run,
            text,
            id=child_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        return f"parent of {child_id} done"


@workflow.defn
class Receiver:
    """Waits for a note sent by another workflow, and returns it."""

    def __init__(self) -> None:
        self._note: str | None = None

    @workflow.signal
    def note(self, text: str) -> None:
        """Receive the note."""
        self._note = text

    @workflow.run
    async def run(self, text: str) -> str:
        """Return the note once it came."""
        await workflow.wait_condition(lambda: self._note is not None)
        return f"{text} got {self._note}"


@workflow.defn
class Sender:
    """Signals another workflow from workflow code."""

    @workflow.run
    async def run(self, receiver_id: str, text: str) -> str:
        """Send ``text`` to the receiver."""
        await workflow.get_external_workflow_handle(receiver_id).signal(Receiver.note, text)
        return f"sent to {receiver_id}"


_WORDS = [f"w{i:03d}" for i in range(600)]


@activity.defn
async def model_call(conversation: list[str]) -> str:
    """A scripted model: a 3-8 KB reply that depends on the conversation so far."""
    import random

    rng = random.Random(f"{len(conversation)}:{conversation[-1][:64]}")
    size = rng.randint(3_000, 8_000)
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < size:
        words.append(rng.choice(_WORDS))
    return " ".join(words)


@workflow.defn
class AgentLoop:
    """An agent's loop: every model call's input is the whole conversation so far."""

    @workflow.run
    async def run(self, conversation: list[str], turns: int) -> list[str]:
        """Return the conversation after ``turns`` model calls."""
        for _ in range(turns):
            reply = await workflow.execute_activity(
                model_call, conversation, start_to_close_timeout=_TIMEOUT
            )
            conversation = [*conversation, reply]
        return conversation
