"""``TaskQueue`` (``tq``): one queue on one broker, the broker URL coming from a Secret."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from celeriac_operator import names
from celeriac_operator.models.common import Model, Resource, ResourceStatus, SecretRef, cel, rule

BROKER_QUEUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
"""A broker queue name: safe as a Redis key part and an AMQP queue name."""
DEAD_LETTER_SUFFIX = ".dead"

_NOT_DEAD = rule(
    "!self.endsWith('.dead')",
    "must not end in '.dead': that suffix is reserved for dead-letter queues",
)


class DeadLetterSpec(Model):
    """Where messages the worker cannot process (malformed, unknown task) go, with their reason."""

    enabled: bool = Field(default=True, description="Route rejected messages to a dead-letter queue.")
    queue_name: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=BROKER_QUEUE_PATTERN,
        description="Broker name of the dead-letter queue. Default: `<queueName>.dead`.",
    )


class TaskQueueSpec(Model):
    """Desired state of a TaskQueue."""

    queue_name: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=BROKER_QUEUE_PATTERN,
        description="Broker queue name (what Celery calls the queue). Default: `metadata.name`.",
        json_schema_extra=cel(_NOT_DEAD),
    )
    broker: SecretRef = Field(
        description="Broker connection: a Secret key holding a `redis://`, `rediss://`, `amqp://` or `amqps://` URL.",
    )
    max_priority: int = Field(
        default=0, ge=0, le=9,
        description="Priority levels. RabbitMQ: `x-max-priority` when > 0. Redis always keeps kombu's 4 priority "
        "lists.",
    )
    dead_letter: DeadLetterSpec = Field(
        default=DeadLetterSpec(), description="Dead-letter queue settings.",
        json_schema_extra={"default": DeadLetterSpec().to_json()},
    )

    def effective_queue_name(self, name: str) -> str:
        """The broker queue name: ``queueName`` or, unset, the resource's ``metadata.name``."""
        return self.queue_name or name

    def dead_letter_queue_name(self, name: str) -> str | None:
        """The dead-letter queue's broker name, or None when dead-lettering is disabled."""
        if not self.dead_letter.enabled:
            return None
        return self.dead_letter.queue_name or self.effective_queue_name(name) + DEAD_LETTER_SUFFIX


class TaskQueueStatus(ResourceStatus):
    """Observed state of a TaskQueue (written by the operator). Conditions: `BrokerReachable`, `Ready`."""

    backlog: int | None = Field(default=None, ge=0, description="Messages waiting in the queue (all priority levels).")
    broker_host: str | None = Field(
        default=None, max_length=512, description="Broker `host:port` (never credentials)."
    )
    last_check_time: datetime | None = Field(default=None, description="When the broker was last checked.")


class TaskQueue(Resource):
    """A parsed TaskQueue."""

    kind: ClassVar[str] = names.TASKQUEUE_KIND
    summary: ClassVar[str] = "A queue on a broker; the broker URL comes from a Secret."
    plural: ClassVar[str] = names.TASKQUEUE_PLURAL
    root_rules: ClassVar[tuple[dict[str, str], ...]] = (
        rule(
            "has(self.spec.queueName) || !self.metadata.name.endsWith('.dead')",
            "spec.queueName is required when the TaskQueue's name ends in '.dead': that suffix is reserved for "
            "dead-letter queues",
            field_path=".spec.queueName",
        ),
        rule(
            "!has(self.spec.deadLetter) || !has(self.spec.deadLetter.queueName) || self.spec.deadLetter.queueName != "
            "(has(self.spec.queueName) ? self.spec.queueName : self.metadata.name)",
            "spec.deadLetter.queueName must differ from the queue's own broker name",
            field_path=".spec.deadLetter.queueName",
        ),
    )

    spec: TaskQueueSpec
    status: TaskQueueStatus = Field(default_factory=TaskQueueStatus)

    @property
    def queue_name(self) -> str:
        """The broker queue name."""
        return self.spec.effective_queue_name(self.name)
