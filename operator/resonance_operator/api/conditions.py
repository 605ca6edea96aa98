"""Every condition type, status and reason the operator writes, in one place.

Enums instead of string literals, so a typo is a name error, not a silently
new reason. Reasons are one CamelCase word, as the Kubernetes API conventions
ask; messages are for humans.
"""

from __future__ import annotations

import enum


class ConditionType(enum.StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    MONITORING = "Monitoring"
    """The PodMonitor / ServiceMonitor the spec asks for exists (its CRD is served)."""
    AUTOSCALING = "Autoscaling"
    """How the workers are scaled (only while ``autoscaling.enabled``): the connections target needs KEDA."""
    BACKUP_SUCCEEDED = "BackupSucceeded"


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(enum.StrEnum):
    # Ready
    ALL_COMPONENTS_READY = "AllComponentsReady"
    WORKERS_NOT_READY = "WorkersNotReady"
    REDIS_NOT_READY = "RedisNotReady"
    NEO4J_NOT_READY = "Neo4jNotReady"
    # Progressing
    CREATING = "Creating"
    WORKERS_UPDATING = "WorkersUpdating"
    WORKERS_SCALING = "WorkersScaling"
    COMPONENTS_STARTING = "ComponentsStarting"
    RECONCILED = "Reconciled"
    # Degraded
    AS_EXPECTED = "AsExpected"
    INVALID_SPEC = "InvalidSpec"
    APPLY_FAILED = "ApplyFailed"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    GENERATED_SECRET_MISSING = "GeneratedSecretMissing"
    # Monitoring
    MONITORS_CREATED = "MonitorsCreated"
    MONITORING_NOT_REQUESTED = "NotRequested"
    MONITORING_CRD_MISSING = "MonitoringCRDMissing"
    # Autoscaling
    SCALED_BY_KEDA = "ScaledByKEDA"
    SCALED_ON_CPU = "ScaledOnCPU"
    KEDA_NOT_SERVED = "KEDANotServed"


class BackupReason(enum.StrEnum):
    """``BackupSucceeded`` reasons (only with ``spec.backup``)."""

    LAST_BACKUP_SUCCEEDED = "LastBackupSucceeded"
    LAST_BACKUP_FAILED = "LastBackupFailed"
    NO_BACKUP_YET = "NoBackupYet"
    BACKUP_RUNNING = "BackupRunning"


class ProgressingReason(enum.StrEnum):
    """``Progressing`` reasons while a rollout (``spec.rollout``) moves the workers."""

    ROLLOUT_COMPLETED = "RolloutCompleted"
    ROLLING_UPDATE = "RollingUpdate"
    CANARY_STEP_PROGRESSING = "CanaryStepProgressing"
    PREVIEW_PROGRESSING = "PreviewProgressing"
    ROLLOUT_PAUSED = "RolloutPaused"
    DRAINING_PREVIOUS = "DrainingPrevious"
    ROLLED_BACK = "RolledBack"


class DegradedReason(enum.StrEnum):
    """``Degraded`` reasons a rollout sets (also the reason of its Warning Event)."""

    ANALYSIS_FAILED = "AnalysisFailed"
    ROLLOUT_ABORTED = "RolloutAborted"
    INVALID_ROLLOUT_SPEC = "InvalidRolloutSpec"


class EventReason(enum.StrEnum):
    """Reasons of the Kubernetes Events posted on important transitions."""

    BECAME_READY = "BecameReady"
    BECAME_NOT_READY = "BecameNotReady"
    BECAME_DEGRADED = "BecameDegraded"
    RECOVERED = "Recovered"
    CHILD_CREATED = "ChildCreated"
    CHILD_REPAIRED = "ChildRepaired"
    CHILD_DELETED = "ChildDeleted"
    ROLLOUT_PROMOTED = "RolloutPromoted"
    ROLLOUT_STARTED = "RolloutStarted"
    ANALYSIS_FAILED = "AnalysisFailed"
    ROLLOUT_ABORTED = "RolloutAborted"
    INVALID_ROLLOUT_ACTION = "InvalidRolloutAction"
    MONITORING_CRD_MISSING = "MonitoringCRDMissing"
    AUTOSCALING_HANDOVER = "AutoscalingHandover"
    REPLICAS_OWNED_BY_AUTOSCALER = "ReplicasOwnedByAutoscaler"
    DEFAULT_CPU_REQUEST = "DefaultCPURequest"
    KEDA_NOT_SERVED = "KEDANotServed"


class EventType(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"
