# veille in a container. Build: `docker build -t veille .`
# Run:   `docker run -v veille-state:/app/state -p 127.0.0.1:8080:8080 veille`
# (or `docker compose up`; with PostgreSQL: `docker compose --profile postgres up`)

# ---- build: install veille and its dependencies into a virtualenv of their own
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/veille
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN /opt/veille/bin/pip install --no-cache-dir .

# ---- runtime: the virtualenv, the shipped watchlists, a non-root user, state on a volume
FROM python:3.11-slim
RUN groupadd --system --gid 10001 veille \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home veille
COPY --from=build /opt/veille /opt/veille
WORKDIR /app
COPY watchlists ./watchlists
RUN mkdir state && chown 10001:10001 state
ENV PATH=/opt/veille/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VEILLE_LOG_FORMAT=json \
    VEILLE_HTTP_HOST=0.0.0.0 \
    VEILLE_HTTP_PORT=8080
USER 10001:10001
VOLUME ["/app/state"]
EXPOSE 8080
# no curl in slim images: the probe is Python's own urllib
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VEILLE_HTTP_PORT', '8080'), timeout=4)"]
CMD ["veille", "run"]
