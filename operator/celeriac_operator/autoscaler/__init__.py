"""Queue-depth autoscaling of WorkerPools (issue 6 item 3; docs/autoscaling.md).

Three parts, kept apart so the rules can be tested without brokers or Kubernetes:

* :mod:`.policy`: pure. Backlog and current replicas in, desired replicas out (:func:`decide`).
* :mod:`.depth`: I/O. Measures the backlog on Redis or RabbitMQ (:func:`measure`).
* :mod:`.deletion_cost`: pure. Which pods a scale-down should remove first (:func:`deletion_costs`).

The operator's WorkerPool daemon wires them to the Kubernetes API.
"""

from celeriac_operator.autoscaler.deletion_cost import PodInfo, deletion_costs, parse_cost
from celeriac_operator.autoscaler.depth import (
    AutoscalerError,
    Backlog,
    BrokerUnreachable,
    broker_host,
    measure,
    measure_amqp,
    measure_redis,
)
from celeriac_operator.autoscaler.policy import Decision, ScalePolicy, ScaleState, decide, recommend, restore_state

__all__ = [
    "AutoscalerError",
    "Backlog",
    "BrokerUnreachable",
    "Decision",
    "PodInfo",
    "ScalePolicy",
    "ScaleState",
    "broker_host",
    "decide",
    "deletion_costs",
    "measure",
    "measure_amqp",
    "measure_redis",
    "parse_cost",
    "recommend",
    "restore_state",
]
