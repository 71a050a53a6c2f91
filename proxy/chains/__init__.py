"""Chains: several chat calls in sequence, each step's prompt a template over the chain's input and the earlier
steps' outputs (`POST /v1/gateway/chains`, or `model: "chain/<name>"` for gateway.yaml's `chains.named`).
runner.py runs the steps in-process through the pipeline (auth's alias check, admission, cache, routing,
resilience, metering: one ledger row per step, linked by `chain_id`)."""

from proxy.chains.runner import PREFIX, ChainRun, ChainRunner, StepResult

__all__ = ["PREFIX", "ChainRun", "ChainRunner", "StepResult"]
