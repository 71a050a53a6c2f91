"""Stage 5: resilience — retries, circuit breakers, load balancing, fallbacks.

    balancer.py  per-deployment live state, per-alias plans and strategies
    breakers.py  pybreaker-based breakers driven without blocking the event loop
    sync.py      breaker state shared across replicas through Redis, in the background
    retry.py     failure classification and backoff
    fallback.py  fallback chains and the final error listing every attempt
    executor.py  the Executor the pipeline calls
"""

from proxy.resilience.executor import Executor

__all__ = ["Executor"]
