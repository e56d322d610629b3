# syntax=docker/dockerfile:1
# Build: docker build -t newsroom-api .
# Run:   docker run -p 8000:8000 -e DATABASE_URL=postgresql+asyncpg://... \
#          -e SECRET_KEY=... -e ENVIRONMENT=production newsroom-api
# The start command applies the migrations, then serves with $WORKERS uvicorn workers.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir "uv>=0.5,<1"
WORKDIR /srv
# Dependencies first, from the lock file only, so code changes reuse this layer.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    WORKERS=2
RUN useradd --system --uid 10001 --home-dir /srv --shell /usr/sbin/nologin news
WORKDIR /srv
COPY --from=build /opt/venv /opt/venv
COPY alembic.ini ./
COPY migrations ./migrations
COPY app ./app
RUN mkdir -p /srv/var/media && chown -R news:news /srv/var
USER news
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz\", timeout=2)"]
CMD ["python", "-m", "app", "serve"]
