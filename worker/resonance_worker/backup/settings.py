"""The backup Job's settings, from the environment (``RESONANCE_BACKUP_*``; Redis from the worker's own
``RESONANCE_REDIS_*``). The operator sets them on the CronJob from ``spec.backup`` (docs/operator.md).

==================================  ===============================================================
``RESONANCE_BACKUP_CLUSTER``        the cluster's name, written into each manifest
``RESONANCE_BACKUP_DESTINATION``    ``directory`` (a mounted PVC) or ``s3``
``RESONANCE_BACKUP_PATH``           the directory (``directory``)
``RESONANCE_BACKUP_PREFIX``         the folder of this cluster's backups in the destination
``RESONANCE_BACKUP_S3_ENDPOINT``    e.g. ``https://s3.eu-west-1.amazonaws.com`` (``s3``, path-style)
``RESONANCE_BACKUP_S3_BUCKET``      the bucket (created if missing)
``RESONANCE_BACKUP_S3_REGION``      the signing region (default ``us-east-1``)
``AWS_ACCESS_KEY_ID`` /             the credentials (the operator maps them from the Secret named
``AWS_SECRET_ACCESS_KEY``           by ``spec.backup.destination.s3.credentialsSecretRef``)
``RESONANCE_BACKUP_RETENTION``      ``7d``, ``12h``, ``4w``; older backups are removed after each
                                    backup, never the newest complete one (empty: keep all)
==================================  ===============================================================
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from resonance_worker.backup.destination import Destination, DirectoryDestination, S3Destination
from resonance_worker.backup.plan import BackupError
from resonance_worker.backup.sigv4 import Credentials


class DestinationKind(StrEnum):
    DIRECTORY = "directory"
    S3 = "s3"


class BackupSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RESONANCE_BACKUP_", extra="ignore", frozen=True)

    cluster: str = Field("resonance", min_length=1)
    destination: DestinationKind = DestinationKind.DIRECTORY
    path: Path = Path("/backup")
    prefix: str = Field("resonance", min_length=1)
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    retention: str = ""

    def open(self) -> Destination:
        if self.destination is DestinationKind.DIRECTORY:
            return DirectoryDestination(self.path, self.prefix)
        access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not (self.s3_endpoint and self.s3_bucket and access and secret):
            raise BackupError(
                "an s3 destination needs RESONANCE_BACKUP_S3_ENDPOINT, RESONANCE_BACKUP_S3_BUCKET, "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        credentials = Credentials(access, SecretStr(secret).get_secret_value(), self.s3_region)
        return S3Destination(self.s3_endpoint, self.s3_bucket, self.prefix, credentials)
