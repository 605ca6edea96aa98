"""The operator's errors.

    OperatorError
    ├── ApiError            the Kubernetes API answered with an error status
    │   └── ConflictError   409: a server-side apply conflict or a lost race
    └── CredentialsError    no usable kubeconfig or in-cluster service account

A spec the operator cannot act on is not an exception: it becomes the
``Degraded`` condition with reason ``InvalidSpec``.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base of every error the operator raises on purpose."""


class ApiError(OperatorError):
    """The API server refused a request."""

    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.message = message


class ConflictError(ApiError):
    """409 Conflict."""


class CredentialsError(OperatorError):
    """No way to authenticate to the API server."""
