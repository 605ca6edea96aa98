"""``resonance-operator``: run the operator (kopf) with settings from the environment."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from resonance_operator.settings import OperatorSettings


def main(argv: list[str] | None = None) -> None:
    try:
        settings = OperatorSettings()
    except ValidationError as exc:
        print(f"resonance-operator: invalid settings:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    from resonance_operator.handlers.run import run

    run(settings)


if __name__ == "__main__":
    main(sys.argv[1:])
