"""`type: cli`: a local command-line model as an upstream (provider.py runs it, errors.py reports it)."""

from proxy.providers.cli.config import CLIConfig
from proxy.providers.registry import Registration

PROVIDER = Registration("cli", CLIConfig, provider="proxy.providers.cli.provider:CLIProvider")
