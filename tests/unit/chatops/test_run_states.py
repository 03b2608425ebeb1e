"""A chat run's states (RunState): the values chat shows, the transitions allowed, a refused one changing nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from libcluster.chatops.feed import Feed
from libcluster.chatops.runs import TRANSITIONS, Door, Run, RunState, TransitionError
from tests.unit.chatops.conftest import RecordingSink

S = RunState
DOOR = Door(cookbook="!cookbook", approve="!approve", deny="!deny", help="!cookbook help", max_lines=10)
FINISHED = (S.PASSED, S.FAILED, S.CANCELLED, S.DENIED, S.EXPIRED, S.HELP, S.REJECTED)


@pytest.fixture
def run() -> Iterator[Run]:
    """A run just requested (its feed sends to a recording sink, closed at the end)."""
    feed = Feed(RecordingSink(), max_pending=100, skipped_note=lambda count: f"{count} skipped")
    yield Run("abc123", "sre.demo", ["x"], False, "alice", "irc:alice!a@host", "irc:#sre", feed, DOOR)
    feed.close([])
    feed.join(5)


def test_values_are_the_words_chat_showed_before_the_enum() -> None:
    assert [state.value for state in RunState] == [
        "checking", "awaiting-approval", "queued", "running", "cancelling", "passed", "failed", "cancelled",
        "denied", "expired", "help", "rejected"]
    assert f"[x] {S.AWAITING_APPROVAL}: y" == "[x] awaiting-approval: y" and str(S.DENIED) == "denied"
    assert RunState("running") is S.RUNNING and isinstance(S.RUNNING, str)  # equal to the old strings


def test_active_waiting_and_started_are_the_old_groups_of_states() -> None:
    assert {state for state in RunState if state.active} == {"checking", "awaiting-approval", "queued", "running",
                                                              "cancelling"}
    assert {state for state in RunState if state.waiting} == {"checking", "awaiting-approval", "queued"}
    assert {state for state in RunState if state.started} == {"running", "cancelling"}


def test_every_state_has_its_transitions_and_only_finished_states_have_none() -> None:
    assert set(TRANSITIONS) == set(RunState)
    assert {state for state, following in TRANSITIONS.items() if not following} == set(FINISHED)


@pytest.mark.parametrize("path", [
    (S.QUEUED, S.RUNNING, S.PASSED),
    (S.AWAITING_APPROVAL, S.QUEUED, S.RUNNING, S.CANCELLING, S.CANCELLED),
    (S.AWAITING_APPROVAL, S.EXPIRED),
    (S.AWAITING_APPROVAL, S.DENIED),
    (S.HELP,),
    (S.REJECTED,),
    (S.QUEUED, S.RUNNING, S.CANCELLED),  # interrupted by the service stopping: no cancelling step
    (S.QUEUED, S.RUNNING, S.FAILED),  # the runner failed, or could not start
], ids=lambda path: "-".join(path))
def test_a_run_follows_the_paths_the_service_takes(run: Run, path: tuple[RunState, ...]) -> None:
    assert run.state == S.CHECKING
    for state in path:
        run.move(state)
        assert run.state is state
    assert not run.state.active


@pytest.mark.parametrize(("before", "after"), [
    ((), S.RUNNING),  # a run not checked yet cannot start
    ((S.AWAITING_APPROVAL,), S.RUNNING),  # an approval queues the run, it does not start it
    ((S.QUEUED,), S.PASSED),  # a queued run has no process whose end could pass
    ((S.QUEUED, S.RUNNING, S.CANCELLING), S.FAILED),  # an interrupted run that fails is cancelled
    ((S.QUEUED, S.RUNNING, S.PASSED), S.CANCELLED),  # a late cancel of a finished run
    ((S.AWAITING_APPROVAL, S.DENIED), S.QUEUED),  # an approval after a deny
    ((S.AWAITING_APPROVAL, S.EXPIRED), S.QUEUED),  # an approval after the timeout
], ids=lambda value: "-".join(value) if isinstance(value, tuple) else value)
def test_a_transition_not_allowed_raises_and_changes_nothing(run: Run, before: tuple[RunState, ...],
                                                             after: RunState) -> None:
    for state in before:
        run.move(state)
    current = run.state
    with pytest.raises(TransitionError, match=rf"^run abc123: state {current} cannot become {after} \(allowed: "):
        run.move(after)
    assert run.state is current


def test_a_finished_run_says_it_goes_nowhere(run: Run) -> None:
    run.move(S.HELP)
    with pytest.raises(TransitionError, match=r"state help cannot become checking \(allowed: none: the run has ended"):
        run.move(S.CHECKING)


def test_the_state_cannot_be_set_around_the_check(run: Run) -> None:
    with pytest.raises(AttributeError):
        run.state = S.PASSED  # type: ignore[misc]
    assert run.state == S.CHECKING
