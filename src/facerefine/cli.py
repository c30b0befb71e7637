"""The ``facerefine`` command line."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="facerefine")
def main() -> None:
    """facerefine: schnell + a fast head, close to dev, at a fraction of the cost."""


@main.command()
def standins() -> None:
    """Build the smoke profile's random stand-in networks (project-local, offline)."""
    from facerefine import weights

    for role in ("schnell", "dev"):
        click.echo(f"flux-{role}: {weights.flux_location('smoke', role)}")


if __name__ == "__main__":
    main()
