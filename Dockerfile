# Slim, non-root image of the gateway.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN pip install --no-cache-dir --prefix=/install ".[bedrock]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /app gateway && mkdir -p /app && chown gateway:gateway /app
WORKDIR /app
COPY --from=build /install /usr/local
COPY gateway.yaml /app/gateway.yaml
COPY config/agents.example.yaml /app/config/agents.example.yaml
USER gateway
ENV PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
# Listening on 0.0.0.0, `gateway serve` refuses the documented default keys (exit 2): pass your own,
#   docker run -e GATEWAY_DEV_KEY=... -e GATEWAY_ADMIN_KEY=... -p 8080:8080 llm-gateway
# (or --env-file with them, or mount a gateway.yaml of your own at /app/gateway.yaml).
CMD ["gateway", "serve", "--config", "/app/gateway.yaml", "--host", "0.0.0.0"]
