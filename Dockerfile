# veille in a container: `docker build -t veille . && docker run -v veille-state:/app/state veille`
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install --no-cache-dir .
COPY watchlists ./watchlists
RUN useradd --create-home veille && mkdir -p state && chown veille state
USER veille
VOLUME ["/app/state"]
ENV VEILLE_LOG_FORMAT=json
CMD ["veille", "run"]
