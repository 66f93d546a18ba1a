"""The autoscaler's pure policy: recommendations, the stabilization window, the step cap, the busy floor."""

from __future__ import annotations

from dataclasses import replace

import pytest

from celeriac_operator.autoscaler import Decision, ScalePolicy, ScaleState, decide, recommend, restore_state

POLICY = ScalePolicy(min_replicas=1, max_replicas=10, target_backlog_per_replica=10, activation_backlog=1,
                     scale_down_stabilization_s=60.0, scale_down_max_step=2)
TO_ZERO = replace(POLICY, min_replicas=0, activation_backlog=5)


def run(policy: ScalePolicy, polls: list[tuple[float, int, int, int]],
        state: ScaleState | None = None) -> list[Decision]:
    """Feed ``(now_s, backlog, busy_workers, current_replicas)`` polls, carrying state between them."""
    decisions = []
    state = state or ScaleState()
    for now_s, backlog, busy, current in polls:
        decision = decide(policy, state, now_s=now_s, backlog=backlog, busy_workers=busy, current_replicas=current)
        decisions.append(decision)
        state = decision.state
    return decisions


@pytest.mark.parametrize(("policy", "backlog", "current", "expected"), [
    (POLICY, 0, 3, 1),          # empty: down to min
    (POLICY, 1, 3, 1),          # ceil(1/10)
    (POLICY, 10, 3, 1),         # exactly one replica's worth
    (POLICY, 11, 3, 2),         # ceil rounds up
    (POLICY, 95, 3, 10),
    (POLICY, 1000, 3, 10),      # clamped to max
    (TO_ZERO, 0, 2, 0),         # min 0: empty scales to zero
    (TO_ZERO, 3, 2, 1),         # awake: any backlog keeps a replica
    (TO_ZERO, 4, 0, 0),         # asleep: below activationBacklog stays at zero
    (TO_ZERO, 5, 0, 1),         # asleep: activationBacklog wakes it
    (TO_ZERO, 55, 0, 6),        # waking goes straight to what the backlog asks for
    (replace(POLICY, min_replicas=3), 0, 0, 3),   # min applies even when asleep
])
def test_recommendation_is_backlog_over_target_rounded_up_and_clamped(
    policy: ScalePolicy, backlog: int, current: int, expected: int
) -> None:
    assert recommend(policy, backlog=backlog, current_replicas=current) == expected


def test_scale_up_happens_on_the_first_poll_that_sees_the_backlog() -> None:
    [decision] = run(POLICY, [(0.0, 1000, 3, 3)])
    assert decision.desired == 10
    assert decision.reason == "backlog 1000 > 10/replica: 3 -> 10"
    assert decision.state.last_scale_time_s == 0.0


def test_scale_up_is_not_delayed_by_a_recent_scale_down() -> None:
    decisions = run(replace(POLICY, scale_down_stabilization_s=0.0), [(0.0, 0, 0, 5), (1.0, 80, 0, 3)])
    assert [d.desired for d in decisions] == [3, 8]


def test_window_holds_the_scale_down_until_the_high_recommendation_ages_out() -> None:
    decisions = run(POLICY, [
        (0.0, 100, 0, 1),    # -> 10
        (2.0, 0, 0, 10),     # empty, but 10 was recommended 2 s ago
        (59.0, 0, 0, 10),    # still inside the 60 s window
        (60.0, 0, 0, 10),    # the t=0 recommendation ages out: step down
    ])
    assert [d.desired for d in decisions] == [10, 10, 10, 8]
    assert "held by the 60s stabilization window (highest recommendation 10)" in decisions[1].reason
    assert decisions[2].state.last_scale_time_s == 0.0
    assert decisions[3].state.last_scale_time_s == 60.0


def test_scale_down_goes_to_the_highest_recommendation_in_the_window() -> None:
    decisions = run(POLICY, [
        (0.0, 100, 0, 10),   # 10
        (30.0, 50, 0, 10),   # 5
        (45.0, 30, 0, 10),   # 3
        (61.0, 0, 0, 10),    # 10 aged out; highest left is 5, but the step cap allows only 10 -> 8
        (62.0, 0, 0, 8),     # 8 -> 6 (step)
        (63.0, 0, 0, 6),     # highest in window is still 5 (from t=30)
        (91.0, 0, 0, 5),     # 5 aged out, 3 (t=45) is the highest
        (106.0, 0, 0, 3),    # 3 aged out: 3 -> 1 = min
    ])
    assert [d.desired for d in decisions] == [10, 10, 10, 8, 6, 5, 3, 1]


def test_each_scale_down_is_capped_at_the_max_step() -> None:
    policy = replace(POLICY, scale_down_stabilization_s=0.0, scale_down_max_step=3)
    decisions = run(policy, [(0.0, 0, 0, 10), (1.0, 0, 0, 7), (2.0, 0, 0, 4), (3.0, 0, 0, 1)])
    assert [d.desired for d in decisions] == [7, 4, 1, 1]
    assert "step capped at 3" in decisions[0].reason


def test_scale_down_never_goes_below_the_busy_workers() -> None:
    policy = replace(POLICY, scale_down_stabilization_s=0.0, scale_down_max_step=10)
    decisions = run(policy, [(0.0, 0, 6, 10), (1.0, 0, 6, 6), (2.0, 0, 2, 6)])
    assert [d.desired for d in decisions] == [6, 6, 2]
    assert "6 busy worker(s)" in decisions[0].reason
    assert decisions[1].reason == "backlog 0 asks for 1; 6 busy worker(s): keep 6"


def test_busy_workers_above_the_replica_count_never_cause_a_scale_up() -> None:
    # Pods still draining after a scale-down are busy; they must not grow the pool back.
    [decision] = run(replace(TO_ZERO, scale_down_stabilization_s=0.0), [(0.0, 0, 3, 0)])
    assert decision.desired == 0


def test_empty_queue_with_min_zero_scales_to_zero_after_the_window() -> None:
    decisions = run(TO_ZERO, [(0.0, 20, 0, 0), (1.0, 0, 0, 2), (61.0, 0, 0, 2)])
    assert [d.desired for d in decisions] == [2, 2, 0]


def test_a_sleeping_pool_wakes_only_at_the_activation_backlog() -> None:
    decisions = run(TO_ZERO, [(0.0, 1, 0, 0), (2.0, 4, 0, 0), (4.0, 5, 0, 0)])
    assert [d.desired for d in decisions] == [0, 0, 1]
    assert decisions[2].reason == "backlog 5 >= activation 5: 0 -> 1"
    assert decisions[0].state.last_scale_time_s is None


def test_a_lowered_max_or_raised_min_applies_at_once() -> None:
    [lowered] = run(replace(POLICY, max_replicas=4), [(0.0, 1000, 10, 10)])
    assert lowered.desired == 4
    assert lowered.reason == "replicas outside [1, 4]: 10 -> 4"
    [raised] = run(replace(POLICY, min_replicas=5), [(0.0, 0, 0, 2)])
    assert raised.desired == 5


def test_steady_backlog_keeps_the_replicas_and_the_last_scale_time() -> None:
    decisions = run(POLICY, [(0.0, 40, 0, 1), (2.0, 40, 4, 4), (4.0, 35, 4, 4)])
    assert [d.desired for d in decisions] == [4, 4, 4]
    assert not decisions[1].changed(4)
    assert decisions[2].state.last_scale_time_s == 0.0


def test_window_keeps_only_recommendations_younger_than_its_length() -> None:
    decisions = run(POLICY, [(float(t), 0, 0, 1) for t in range(0, 200, 2)])
    assert [t for t, _ in decisions[-1].state.recommendations] == [float(t) for t in range(140, 200, 2)]


def test_restored_state_after_an_operator_restart_blocks_scale_down_for_one_window() -> None:
    state = restore_state(now_s=1000.0, current_replicas=8, last_scale_time_s=900.0)
    decisions = run(POLICY, [(1002.0, 0, 0, 8), (1059.0, 0, 0, 8), (1060.0, 0, 0, 8)], state=state)
    assert [d.desired for d in decisions] == [8, 8, 6]
    assert decisions[0].state.last_scale_time_s == 900.0


def test_restored_state_still_scales_up_at_once() -> None:
    state = restore_state(now_s=1000.0, current_replicas=2)
    [decision] = run(POLICY, [(1000.5, 90, 2, 2)], state=state)
    assert decision.desired == 9


@pytest.mark.parametrize("kwargs", [
    {"min_replicas": 5, "max_replicas": 4},
    {"min_replicas": -1},
    {"max_replicas": 0, "min_replicas": 0},
    {"target_backlog_per_replica": 0},
    {"activation_backlog": 0},
    {"scale_down_max_step": 0},
    {"scale_down_stabilization_s": -1.0},
])
def test_policy_rejects_bounds_the_crd_would_reject(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be|need"):
        replace(POLICY, **kwargs)
