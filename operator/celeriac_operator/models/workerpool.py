"""``WorkerPool`` (``wp``): a Deployment of workers consuming some TaskQueues, with its autoscaler."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from celeriac_operator import names
from celeriac_operator.models.common import (
    K8S_NAME_PATTERN,
    EnvVar,
    FreeForm,
    Model,
    Resource,
    ResourceRequirements,
    ResourceStatus,
    SecretRef,
    cel,
    rule,
)

APP_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_.]*)?$"
TaskQueueName = Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME_PATTERN)]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]


class AutoscalingSpec(Model):
    """Queue-depth autoscaling (see docs/autoscaling.md)."""

    model_config = Model.model_config | {
        "json_schema_extra": cel(
            rule(
                "self.minReplicas <= self.maxReplicas",
                "autoscaling.minReplicas must be <= autoscaling.maxReplicas",
                field_path=".minReplicas",
            ),
        )
    }

    enabled: bool = Field(
        default=True, description="Scale on backlog. When false, `spec.replicas` (or `kubectl scale`) rules.",
    )
    min_replicas: int = Field(default=1, ge=0, le=1000, description="Fewest replicas. `0` scales to zero when idle.")
    max_replicas: int = Field(default=10, ge=1, le=1000, description="Most replicas.")
    target_backlog_per_replica: int = Field(
        default=10, ge=1, description="Backlog one replica should carry: desired = ceil(backlog / this), clamped."
    )
    poll_interval_seconds: int = Field(default=2, ge=1, le=300, description="Seconds between queue-depth measurements.")
    scale_down_stabilization_seconds: int = Field(
        default=60, ge=0, le=3600, description="Seconds the lower desired count must persist before scaling down."
    )
    scale_down_max_step: int = Field(default=2, ge=1, description="Most replicas removed in one scale-down.")
    activation_backlog: int = Field(
        default=1, ge=1, description="Backlog that wakes a pool scaled to zero (`minReplicas: 0`)."
    )


class WorkerPoolSpec(Model):
    """Desired state of a WorkerPool."""

    model_config = Model.model_config | {
        "json_schema_extra": cel(
            rule(
                "self.terminationGracePeriodSeconds >= self.shutdownTimeoutSeconds + 5",
                "terminationGracePeriodSeconds must be >= shutdownTimeoutSeconds + 5, so a draining worker "
                "finishes before it is killed",
                field_path=".terminationGracePeriodSeconds",
            ),
        )
    }

    queues: list[TaskQueueName] = Field(
        min_length=1, max_length=16,
        description="TaskQueue names (same namespace) whose broker queues the workers consume.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    app: str = Field(
        min_length=1, max_length=256, pattern=APP_PATTERN,
        description="The Celery app, as for `-A`: `module` or `module:attribute`.",
    )
    image: str | None = Field(
        default=None, min_length=1, max_length=512,
        description="Worker image. Default: the operator's `CELERIAC_OPERATOR_WORKER_IMAGE`.",
    )
    image_pull_policy: PullPolicy | None = Field(default=None, description="Kubernetes image pull policy.")
    runtime: Literal["celeriac", "celery"] = Field(
        default="celeriac", description="`celeriac worker` or `celery -A <app> worker` (no health port probes)."
    )
    pool: Literal["prefork", "threads", "solo"] = Field(default="prefork", description="Execution pool.")
    concurrency: int = Field(default=2, ge=1, le=256, description="Tasks run at once per replica.")
    prefetch_multiplier: int = Field(default=4, ge=1, le=1000, description="Messages reserved per unit of concurrency.")
    replicas: int = Field(
        default=1, ge=0, le=1000,
        description="Replicas when `autoscaling.enabled` is false (the scale subresource's `.spec.replicas`).",
    )
    shutdown_timeout_seconds: int = Field(
        default=25, ge=1, le=3600, description="Warm-shutdown deadline: seconds a stopping worker drains running tasks."
    )
    termination_grace_period_seconds: int = Field(
        default=60, ge=5, le=7200, description="Pod grace period; must be >= `shutdownTimeoutSeconds` + 5."
    )
    health_port: int = Field(default=9808, ge=1024, le=65535, description="Port of `/livez`, `/readyz`, `/metrics`.")
    result_backend: SecretRef | None = Field(
        default=None, description="Result backend URL from a Secret key (sets `CELERIAC_RESULT_BACKEND`)."
    )
    resources: ResourceRequirements | None = Field(default=None, description="Worker container resources.")
    env: list[EnvVar] | None = Field(default=None, max_length=256, description="Extra environment variables.")
    node_selector: dict[str, str] | None = Field(default=None, description="Pod node selector.")
    tolerations: list[FreeForm] | None = Field(
        default=None, max_length=64, description="Pod tolerations (Kubernetes shape).",
    )
    affinity: FreeForm | None = Field(default=None, description="Pod affinity (Kubernetes `Affinity`).")
    topology_spread_constraints: list[FreeForm] | None = Field(
        default=None, max_length=16, description="Pod topology spread constraints (Kubernetes shape)."
    )
    priority_class_name: str | None = Field(default=None, max_length=253, description="Pod priority class.")
    service_account_name: str | None = Field(default=None, max_length=253, description="Pod service account.")
    pod_labels: dict[str, str] | None = Field(default=None, description="Extra labels on worker pods.")
    pod_annotations: dict[str, str] | None = Field(default=None, description="Extra annotations on worker pods.")
    extra_args: list[str] | None = Field(
        default=None, max_length=64, description="Extra command-line arguments appended to the worker command."
    )
    autoscaling: AutoscalingSpec = Field(
        default=AutoscalingSpec(), description="Queue-depth autoscaling.",
        json_schema_extra={"default": AutoscalingSpec().to_json()},
    )


class WorkerPoolStatus(ResourceStatus):
    """Observed state of a WorkerPool. Conditions: `Ready`, `QueuesResolved`, `Autoscaling`."""

    replicas: int | None = Field(default=None, ge=0, description="Current replicas (the scale subresource's status).")
    ready_replicas: int | None = Field(default=None, ge=0, description="Replicas whose worker is ready.")
    desired_replicas: int | None = Field(default=None, ge=0, description="Replicas the operator last asked for.")
    backlog: int | None = Field(default=None, ge=0, description="Last measured backlog over all queues.")
    busy_workers: int | None = Field(default=None, ge=0, description="Workers running a task at the last measurement.")
    last_scale_time: datetime | None = Field(
        default=None, description="When the operator last changed the replica count.",
    )
    queues: str | None = Field(default=None, max_length=4096, description="Broker queue names consumed, comma-joined.")
    selector: str | None = Field(
        default=None, max_length=4096, description="Label selector of the pods (scale subresource).",
    )


class WorkerPool(Resource):
    """A parsed WorkerPool."""

    kind: ClassVar[str] = names.WORKERPOOL_KIND
    summary: ClassVar[str] = "A Deployment of Celery-compatible workers consuming TaskQueues, autoscaled on backlog."
    plural: ClassVar[str] = names.WORKERPOOL_PLURAL

    spec: WorkerPoolSpec
    status: WorkerPoolStatus = Field(default_factory=WorkerPoolStatus)

    @property
    def autoscaling(self) -> AutoscalingSpec:
        """The autoscaling settings (always present: the API server defaults them)."""
        return self.spec.autoscaling
