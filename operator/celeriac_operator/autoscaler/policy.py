"""The scaling policy: backlog in, replicas out. Pure: no clock, no I/O, no Kubernetes.

One call to :func:`decide` per poll. The caller keeps the returned :class:`ScaleState` (in
memory, per WorkerPool) and passes it to the next call; after an operator restart
:func:`restore_state` rebuilds a safe one from the WorkerPool status.

The rules (issue 6, DESIGN §5), in the order they apply:

1. recommendation = ceil(backlog / targetBacklogPerReplica), clamped to [min, max];
   a backlog of 0 recommends 0 before the clamp, so ``minReplicas: 0`` scales to zero;
2. from zero replicas, wake only when backlog >= activationBacklog (below it, stay at zero
   unless ``minReplicas`` says otherwise);
3. at or above the current replicas: take the recommendation at once (scale up immediately);
4. below: take the HIGHEST recommendation seen in the last ``scaleDownStabilizationSeconds``
   (the HPA's stabilization window), and go down at most ``scaleDownMaxStep`` replicas at once;
5. never scale down below the number of busy workers (those still running or holding tasks);
6. never above ``maxReplicas``, never below ``minReplicas``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScalePolicy:
    """WorkerPool ``spec.autoscaling`` as the policy needs it (the reconcile code maps the fields)."""

    min_replicas: int
    max_replicas: int
    target_backlog_per_replica: int
    activation_backlog: int
    scale_down_stabilization_s: float
    scale_down_max_step: int

    def __post_init__(self) -> None:
        # The CRD validates these at admission; this guards callers that build policies by hand.
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, "
                             f"got min {self.min_replicas}, max {self.max_replicas}")
        if self.target_backlog_per_replica < 1 or self.activation_backlog < 1 or self.scale_down_max_step < 1:
            raise ValueError("target_backlog_per_replica, activation_backlog and scale_down_max_step "
                             "must be >= 1")
        if self.scale_down_stabilization_s < 0:
            raise ValueError(f"scale_down_stabilization_s must be >= 0, got {self.scale_down_stabilization_s}")


@dataclass(frozen=True)
class ScaleState:
    """What one poll leaves for the next (kept per WorkerPool by the caller)."""

    recommendations: tuple[tuple[float, int], ...] = ()
    """(time_s, recommended replicas) of the polls inside the stabilization window, oldest first."""
    last_scale_time_s: float | None = None
    """When :func:`decide` last changed the replica count (unix seconds), for status."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one poll."""

    desired: int
    """Replicas to set now; equals the current count when nothing changes."""
    recommended: int
    """This poll's raw clamped recommendation, before the window, step and busy floor."""
    reason: str
    """One line for the Event and the log, e.g. ``backlog 1000 > 10/replica: 3 -> 10``."""
    state: ScaleState
    """Pass this to the next :func:`decide`."""

    def changed(self, current_replicas: int) -> bool:
        return self.desired != current_replicas


def recommend(policy: ScalePolicy, *, backlog: int, current_replicas: int) -> int:
    """Rules 1, 2 and 6: the replica count this backlog alone asks for."""
    if backlog <= 0 or (current_replicas == 0 and backlog < policy.activation_backlog):
        raw = 0
    else:
        raw = math.ceil(backlog / policy.target_backlog_per_replica)
    return min(max(raw, policy.min_replicas), policy.max_replicas)


def decide(
    policy: ScalePolicy,
    state: ScaleState,
    *,
    now_s: float,
    backlog: int,
    busy_workers: int,
    current_replicas: int,
) -> Decision:
    """The replicas to run now, and the state for the next poll (rules in the module docstring).

    ``busy_workers`` should count only workers in pods that are not being deleted: a draining
    pod is busy by definition, and must not hold the count up. The floor it sets only limits a
    scale-down (it never causes a scale-up), so draining pods cannot make the pool grow back.
    """
    recommended = recommend(policy, backlog=backlog, current_replicas=current_replicas)
    kept = [(time_s, replicas) for time_s, replicas in state.recommendations
            if now_s - time_s < policy.scale_down_stabilization_s]
    window = (*kept, (now_s, recommended))
    stabilized = max(replicas for _, replicas in window)

    if recommended >= current_replicas:
        desired = recommended
        reason = _up_reason(policy, backlog, current_replicas, desired)
    else:
        floor = max(current_replicas - policy.scale_down_max_step, min(busy_workers, current_replicas))
        desired = min(current_replicas, max(stabilized, floor))
        reason = _down_reason(policy, backlog=backlog, busy=busy_workers, current=current_replicas,
                              recommended=recommended, stabilized=stabilized, desired=desired)
    # Rule 6 wins over everything: a lowered maxReplicas or raised minReplicas applies at once.
    bounded = min(max(desired, policy.min_replicas), policy.max_replicas)
    if bounded != desired:
        reason = (f"replicas outside [{policy.min_replicas}, {policy.max_replicas}]: "
                  f"{current_replicas} -> {bounded}")
        desired = bounded

    last_scale_time_s = now_s if desired != current_replicas else state.last_scale_time_s
    return Decision(desired=desired, recommended=recommended, reason=reason,
                    state=ScaleState(recommendations=window, last_scale_time_s=last_scale_time_s))


def restore_state(*, now_s: float, current_replicas: int, last_scale_time_s: float | None = None) -> ScaleState:
    """A safe state after an operator restart, from status and the Deployment.

    The recommendations of the lost window are unknown; assuming the current replica count was
    recommended just now means no scale-down happens before one full window has passed since
    the restart (never too early), while scale-up stays immediate.
    """
    return ScaleState(recommendations=((now_s, current_replicas),), last_scale_time_s=last_scale_time_s)


def _up_reason(policy: ScalePolicy, backlog: int, current: int, desired: int) -> str:
    target = policy.target_backlog_per_replica
    if desired == current:
        return f"backlog {backlog} at {target}/replica: keep {current}"
    if current == 0:
        return f"backlog {backlog} >= activation {policy.activation_backlog}: 0 -> {desired}"
    if desired == policy.min_replicas and backlog <= target * current:
        return f"minReplicas {policy.min_replicas}: {current} -> {desired}"
    return f"backlog {backlog} > {target}/replica: {current} -> {desired}"


def _down_reason(
    policy: ScalePolicy, *, backlog: int, busy: int, current: int, recommended: int, stabilized: int, desired: int
) -> str:
    window_s = f"{policy.scale_down_stabilization_s:g}s"
    if desired == current:
        if stabilized >= current:
            return (f"backlog {backlog} asks for {recommended}; scale-down held by the {window_s} "
                    f"stabilization window (highest recommendation {stabilized}): keep {current}")
        return f"backlog {backlog} asks for {recommended}; {busy} busy worker(s): keep {current}"
    held = []
    if desired == current - policy.scale_down_max_step and desired > max(stabilized, recommended):
        held.append(f"step capped at {policy.scale_down_max_step}")
    if desired == busy and desired > stabilized:
        held.append(f"{busy} busy worker(s)")
    if stabilized > recommended and desired == stabilized:
        held.append(f"highest in {window_s} window {stabilized}")
    detail = f" ({', '.join(held)})" if held else ""
    return f"backlog {backlog} at {policy.target_backlog_per_replica}/replica: {current} -> {desired}{detail}"
