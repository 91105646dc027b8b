"""``python -m otari_gateway`` runs the CLI."""

from otari_gateway.cli import main

main()
