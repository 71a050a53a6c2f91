"""Agents: versioned virtual models. `model: "agent/<name>"` (or `"agent/<name>@<version>"`) is a template and
settings over an alias; agent.py renders one onto a request, registry.py finds them (gateway.yaml's `agents:`,
version 1, read-only; the admin API's, stored in the ledger database with immutable versions) and is the
pipeline's hook for them (`AgentRegistry.expand`)."""

from proxy.agents.agent import PREFIX, Agent, parse_model
from proxy.agents.registry import AgentRegistry

__all__ = ["PREFIX", "Agent", "AgentRegistry", "parse_model"]
