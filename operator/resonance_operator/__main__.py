"""``resonance-operator``: run the operator (kopf) with settings from the environment.

``--help`` and ``--version`` are answered before any setting is read or any
cluster is looked for, so both work on a laptop with nothing configured.
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from resonance_operator import __version__
from resonance_operator.errors import CredentialsError
from resonance_operator.settings import OperatorSettings


def _settings_help() -> str:
    """One line per ``RESONANCE_OPERATOR_*`` variable, from the settings model itself."""
    prefix = str(OperatorSettings.model_config.get("env_prefix", ""))
    lines = ["settings (environment variables):"]
    for name, field in OperatorSettings.model_fields.items():
        default = "" if field.default_factory is not None else f" (default: {field.default!r})"
        lines.append(f"  {prefix}{name.upper()}  {field.description or ''}{default}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resonance-operator",
        description="Reconcile ResonanceCluster objects (resonance.liminal.dev) into worker Deployments, "
        "Services, Redis, Neo4j and rollouts. Configured by environment variables only.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser().parse_args(argv)
    try:
        settings = OperatorSettings()
    except ValidationError as exc:
        print(f"resonance-operator: invalid settings:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    # Imported here, not at the top: kopf takes over a second to import, and --help, --version and
    # a settings error should answer at once (this is not hiding an import cycle).
    from resonance_operator.handlers.run import run

    try:
        run(settings)
    except CredentialsError as exc:
        print(f"resonance-operator: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main(sys.argv[1:])
