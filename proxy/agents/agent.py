"""One agent version, compiled, and what calling it does to a chat request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from proxy.config.agents import AgentFields
from proxy.core.context import RequestContext
from proxy.core.errors import NOT_FOUND, GatewayError, bad_request
from proxy.core.templates import Template, TemplateError, compile_template

PREFIX = "agent/"
VARS_HEADER = "x-gateway-vars"


def parse_model(model: str) -> tuple[str, int | None]:
    """`agent/<name>` -> (name, None), `agent/<name>@<version>` -> (name, version); 404 for a bad version."""
    name, _, version = model[len(PREFIX):].partition("@")
    if not version:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise GatewayError(404, f"The model {model!r} does not exist: an agent version is a positive integer.",
                           NOT_FOUND, code="model_not_found", param="model")
    return name, int(version)


@dataclass(slots=True, eq=False)
class Agent:
    name: str
    version: int
    fields: AgentFields
    template: Template | None
    required: tuple[str, ...]  # variables without a default
    source: str = "db"  # db | config

    @classmethod
    def build(cls, name: str, version: int, fields: AgentFields, source: str = "db") -> Agent:
        tpl = compile_template(fields.system) if fields.system else None
        required = tuple(sorted(n for n, default in fields.variables.items() if default is None))
        return cls(name, version, fields, tpl, required, source)

    @property
    def model(self) -> str:
        return self.fields.model

    def variables(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        """Defaults, then the request's `metadata` entries named like a declared variable, then the
        `x-gateway-vars` header (a JSON object). The metadata entries used are taken out of the request."""
        declared = self.fields.variables
        values = {k: v for k, v in declared.items() if v is not None}
        meta = body.get("metadata")
        if isinstance(meta, dict) and declared:
            used = [k for k in meta if k in declared]
            if used:
                values.update((k, meta[k]) for k in used)
                rest = {k: v for k, v in meta.items() if k not in declared}
                if rest:
                    body["metadata"] = rest
                else:
                    del body["metadata"]
        raw = ctx.request_headers.get(VARS_HEADER) if ctx.request_headers is not None else None
        if raw:
            try:
                given = orjson.loads(raw)
            except orjson.JSONDecodeError:
                given = None
            if not isinstance(given, dict):
                raise bad_request(f"The {VARS_HEADER} header must be a JSON object of template variables.",
                                  param=VARS_HEADER, code="invalid_variables")
            values.update((k, v) for k, v in given.items() if k in declared)
        missing = [n for n in self.required if values.get(n) is None]
        if missing:
            raise bad_request(f"Agent {self.name!r} needs the template variable(s) {', '.join(missing)}: give them in "
                              f"`metadata` or the {VARS_HEADER} header.", param="metadata", code="missing_variables")
        return values

    def apply(self, ctx: RequestContext) -> None:
        """The request becomes a call of the agent's alias: its rendered system message first, its params
        where the request has none, its tools when the request has none. Nothing of the client's body is
        mutated (batch items, cached bodies): the request gets a new dict."""
        body = dict(ctx.body)
        values = self.variables(ctx, body)
        messages = list(body.get("messages") or ())
        if self.template is not None:
            try:
                system = self.template.render(values)
            except TemplateError as err:
                raise bad_request(f"Agent {self.name!r}: {err}.", param="metadata", code="template_error") from None
            if system:
                messages.insert(0, {"role": "system", "content": system})
        body["messages"] = messages
        for k, v in self.fields.params.items():
            body.setdefault(k, v)
        if self.fields.tools and not body.get("tools"):
            body["tools"] = self.fields.tools
        ctx.body = body
        ctx.alias = self.fields.model
        ctx.agent, ctx.agent_version = self.name, self.version

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"object": "gateway.agent", "name": self.name, "version": self.version,
                               **self.fields.model_dump(mode="json"), "source": self.source,
                               "read_only": self.source == "config"}
        return out
