"""Running a chain's steps through the pipeline, in-process (as the batch endpoint runs its items).

Each step is a chat call of its own: a fresh RequestContext with the chain's key, `Pipeline.admit` (agent
expansion, the key's alias check, routing, quotas and budgets) then `Pipeline.answer` (cache, resilience,
cost); the caller's `finish` meters it (its ledger row carries the chain id). Before the first step, the
whole chain's estimated cost is checked against the key's budgets (`AdmissionStage.admit_estimate`).

A failing step follows its `on_error`: `stop` ends the chain with that step's error, `skip` goes on with an
empty output, `fallback:<alias>` runs the step again on that alias (and stops if that fails too). The chain's
deadline (`chains.deadline`) bounds every step together.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.admission.stage import AdmissionStage
from proxy.config.agents import ChainsConfig, ChainSpec, ChainStep
from proxy.core.context import RequestContext
from proxy.core.errors import TIMEOUT, GatewayError, bad_request
from proxy.core.identity import KeyInfo
from proxy.core.templates import TemplateError, compile_template
from proxy.core.tokens import text_tokens
from proxy.metering.pricing import PriceTable
from proxy.observability import metrics as m
from proxy.optimize.stage import SKIP as OPTIMIZE_SKIP
from proxy.pipeline import AGENT_PREFIX, Answer, Pipeline

PREFIX = "chain/"
DEFAULT_COMPLETION_TOKENS = 1024  # a step without max_tokens, for the chain's up-front cost estimate


@dataclass(slots=True)
class StepResult:
    name: str
    model: str  # as the step asked
    status: str = "ok"  # ok | skipped | fallback | failed
    output: str = ""
    served_by: str = ""  # the alias that answered (the fallback's, after a fallback)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    request_ids: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "model": self.model, "status": self.status, "output": self.output,
               "served_by": self.served_by or None, "usage": {"prompt_tokens": self.prompt_tokens,
                                                              "completion_tokens": self.completion_tokens},
               "cost_usd": round(self.cost_usd, 8), "latency_ms": round(self.latency_ms, 2),
               "request_ids": self.request_ids}
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class ChainRun:
    """One run: its id, the steps' results so far and, when the last step streams, its live context."""

    id: str
    name: str | None
    steps: list[ChainStep]
    input: str
    deadline: float  # time.monotonic() by which every step must be done
    results: list[StepResult] = field(default_factory=list)

    def values(self) -> dict[str, Any]:
        return {"input": self.input, "steps": {r.name: {"output": r.output} for r in self.results}}

    def totals(self) -> dict[str, Any]:
        return {"prompt_tokens": sum(r.prompt_tokens for r in self.results),
                "completion_tokens": sum(r.completion_tokens for r in self.results),
                "cost_usd": round(sum(r.cost_usd for r in self.results), 8),
                "latency_ms": round(sum(r.latency_ms for r in self.results), 2)}

    def summary(self) -> dict[str, Any]:
        out = next((r.output for r in reversed(self.results) if r.status != "skipped"), "")
        return {"object": "gateway.chain", "id": self.id, "chain": self.name, "output": out,
                "steps": [r.as_dict() for r in self.results], "totals": self.totals()}


def step_name(step: ChainStep, i: int) -> str:
    return step.name or f"step{i + 1}"


class ChainRunner:
    def __init__(self, cfg: ChainsConfig, pipeline: Pipeline, admission: AdmissionStage, prices: PriceTable,
                 agent_alias: Callable[[str], Any], metrics: bool = True) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        self.admission = admission
        self.prices = prices
        self.agent_alias = agent_alias  # async: "agent/x[@v]" -> its alias (for the cost estimate)
        self.metrics = metrics

    def named(self, model: str) -> tuple[str, ChainSpec]:
        name = model[len(PREFIX):]
        spec = self.cfg.named.get(name)
        if spec is None:
            raise GatewayError(404, f"The chain {model!r} does not exist.", "not_found_error", code="chain_not_found",
                               param="model")
        return name, spec

    def check_length(self, steps: list[ChainStep]) -> None:
        if len(steps) > self.cfg.max_steps:
            raise bad_request(f"A chain has at most {self.cfg.max_steps} steps (chains.max_steps); this one has "
                              f"{len(steps)}.", param="steps", code="too_many_steps")
        names = [step_name(s, i) for i, s in enumerate(steps)]
        if len(set(names)) != len(names):
            raise bad_request("Step names must be unique.", param="steps", code="duplicate_step_name")

    def start(self, name: str | None, steps: list[ChainStep], chain_input: str) -> ChainRun:
        self.check_length(steps)
        return ChainRun(f"chain_{os.urandom(8).hex()}", name, steps, chain_input,
                        time.monotonic() + self.cfg.deadline)

    async def check_budget(self, key: KeyInfo, run: ChainRun) -> None:
        """The whole chain's estimated cost against the key's budgets, before any step runs: each step's
        template and the input (earlier outputs counted at their max_tokens) at its alias's price."""
        total, carried = 0.0, text_tokens(run.input)
        first_alias = ""
        for step in run.steps:
            alias = await self.agent_alias(step.model) if step.model.startswith(AGENT_PREFIX) else step.model
            first_alias = first_alias or alias
            source = step.prompt or "".join(str(msg.get("content", "")) for msg in step.messages or ())
            prompt = text_tokens(source) + carried
            out = step.params.get("max_completion_tokens") or step.params.get("max_tokens") or DEFAULT_COMPLETION_TOKENS
            provider, model = self.admission.primary(alias)
            price = self.prices.lookup(provider, model) if provider else None
            if price is not None:
                total += (prompt * price.input + int(out) * price.output) / 1_000_000
            carried += int(out)
        await self.admission.admit_estimate(key, first_alias, total)

    def body(self, run: ChainRun, step: ChainStep, model: str, stream: bool) -> dict[str, Any]:
        values = run.values()
        try:
            if step.prompt is not None:
                messages = [{"role": "user", "content": compile_template(step.prompt).render(values)}]
            else:
                messages = [{**msg, "content": compile_template(msg["content"]).render(values)}
                            for msg in step.messages or ()]
        except TemplateError as err:
            raise bad_request(f"Step {step_name(step, len(run.results))!r}: {err}.", param="steps",
                              code="template_error") from None
        body: dict[str, Any] = {**step.params, "model": model, "messages": messages}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def remaining(self, run: ChainRun) -> float:
        left = run.deadline - time.monotonic()
        if left <= 0:
            raise deadline_exceeded(self.cfg.deadline)
        return left

    async def run_step(self, run: ChainRun, i: int, new_ctx: Callable[[], RequestContext], key: KeyInfo,
                       finish: Callable[[RequestContext], None]) -> StepResult:
        """One non-stream step, with its on_error; appended to run.results."""
        step = run.steps[i]
        result, models = self._begin(run, step, i)
        for attempt, model in enumerate(models):
            ctx = self.context(run, i, attempt, new_ctx, key)
            try:
                ctx.body = self.body(run, step, model, stream=False)
                ctx.alias = model
                c = await asyncio.wait_for(self._answer(ctx), self.remaining(run))
                data = c.data if c.data is not None else orjson.loads(c.body)
                result.output = _text(data)
                result.status = "fallback" if attempt else "ok"
                result.error = None
                return result
            except TimeoutError:
                err = deadline_exceeded(self.cfg.deadline)
                ctx.fail(err)
                self._failed(result, err)
                raise err from None
            except GatewayError as err:
                ctx.fail(err)
                self._failed(result, err)
                if err.code == "chain_timeout":
                    raise
                if attempt + 1 < len(models):
                    continue
                if step.on_error == "skip":
                    result.status = "skipped"
                    return result
                raise
            finally:
                self._account(result, ctx, model)
                finish(ctx)
        raise AssertionError("unreachable")

    @staticmethod
    def _begin(run: ChainRun, step: Any, i: int) -> tuple[StepResult, list[str]]:
        """The step's result row (appended to run.results) and the models to try: its own, then `fallback:`."""
        result = StepResult(step_name(step, i), step.model)
        run.results.append(result)
        fallback = [step.on_error[len("fallback:"):]] if step.on_error.startswith("fallback:") else []
        return result, [step.model, *fallback]

    async def _answer(self, ctx: RequestContext) -> Any:
        await self.pipeline.admit(ctx)
        return await self.pipeline.answer(ctx)

    async def open_last(self, run: ChainRun, new_ctx: Callable[[], RequestContext], key: KeyInfo,
                        finish: Callable[[RequestContext], None]) -> tuple[RequestContext, Answer]:
        """The last step as a stream: its context (the caller streams the Answer, then calls `finish` on it).
        A failure before the stream starts follows `fallback:`; `skip` acts as `stop` here (there is nothing
        left to stream instead)."""
        i = len(run.steps) - 1
        step = run.steps[i]
        result, models = self._begin(run, step, i)
        for attempt, model in enumerate(models):
            ctx = self.context(run, i, attempt, new_ctx, key)
            ctx.stream = True
            try:
                ctx.body = self.body(run, step, model, stream=True)
                ctx.alias = model
                await asyncio.wait_for(self.pipeline.admit(ctx), self.remaining(run))
                answer = await asyncio.wait_for(self.pipeline.run(ctx), self.remaining(run))
                result.status = "fallback" if attempt else "ok"
                result.error = None
                result.served_by = ctx.served_alias or model
                return ctx, answer
            except TimeoutError:
                err = deadline_exceeded(self.cfg.deadline)
                ctx.fail(err)
                self._failed(result, err)
                finish(ctx)
                raise err from None
            except GatewayError as err:
                ctx.fail(err)
                self._failed(result, err)
                self._account(result, ctx, model)
                finish(ctx)
                if attempt + 1 < len(models) and err.code != "chain_timeout":
                    continue
                raise
        raise AssertionError("unreachable")

    def settle_last(self, run: ChainRun, ctx: RequestContext, text: str) -> None:
        """After the streamed last step: its output, tokens and cost into the summary."""
        result = run.results[-1]
        result.output = text
        self._account(result, ctx, ctx.alias)

    def context(self, run: ChainRun, i: int, attempt: int, new_ctx: Callable[[], RequestContext],
                key: KeyInfo) -> RequestContext:
        ctx = new_ctx()
        ctx.request_id = f"{run.id}-{i + 1}" + ("-fallback" if attempt else "")
        ctx.key = key
        ctx.chain_id = run.id
        return ctx

    @staticmethod
    def _failed(result: StepResult, err: GatewayError) -> None:
        result.status = "failed"
        result.error = {"status": err.status, **err.body()["error"]}

    @staticmethod
    def _account(result: StepResult, ctx: RequestContext, model: str) -> None:
        result.request_ids.append(ctx.request_id)
        result.latency_ms += ctx.elapsed * 1000
        result.cost_usd += ctx.cost_usd
        if ctx.usage is not None:
            result.prompt_tokens += ctx.usage.prompt_tokens
            result.completion_tokens += ctx.usage.completion_tokens
        if ctx.status < 400:
            result.served_by = ctx.served_alias or model

    async def ask(self, parent: RequestContext, alias: str, instructions: str, text: str) -> str:
        """One in-process chat call on behalf of `parent`'s key (prompt optimisation's rewrite): metered as a call
        of its own (its ledger row names `alias`), never optimised itself; raises GatewayError on failure."""
        assert parent.key is not None
        ctx = RequestContext.new("chat", f"{parent.request_id}-rewrite", parent.client_ip)
        ctx.key, ctx.chain_id, ctx.alias = parent.key, parent.chain_id, alias
        ctx.notes[OPTIMIZE_SKIP] = True
        ctx.body = {"model": alias, "temperature": 0, "messages": [{"role": "system", "content": instructions},
                                                                   {"role": "user", "content": text}]}
        try:
            await self.pipeline.admit(ctx)
            c = await self.pipeline.answer(ctx)
        except GatewayError as err:
            ctx.fail(err)
            raise
        finally:
            self.pipeline.meter.finish(ctx)
        return _text(c.data if c.data is not None else orjson.loads(c.body))

    def finished(self, run: ChainRun, outcome: str) -> None:
        if self.metrics:
            m.CHAIN_RUNS.labels(run.name or "", outcome).inc()


def deadline_exceeded(deadline: float) -> GatewayError:
    return GatewayError(504, f"The chain did not finish within its deadline of {deadline:g} s (chains.deadline).",
                        TIMEOUT, code="chain_timeout")


def _text(data: dict[str, Any]) -> str:
    try:
        content = data["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""
    return content if isinstance(content, str) else ""
