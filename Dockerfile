# syntax=docker/dockerfile:1
#
# One image for all four Lapor services. The service is chosen by the command:
#   docker run lapor python -m services.router
# (docker-compose.yml sets the command per service; the default is intake.)

# A full version (and Debian release), the interpreter the tests run on, so a
# rebuild cannot bring a different Python or base system; bump it together
# with the development interpreter.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# --------------------------------------------------------------------------
# Builder: resolve the locked dependencies into /app/.venv with uv.
# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# Pinned so that the lock file format and resolution behaviour match the uv
# that wrote uv.lock; bump together with the development toolchain.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

# - compile bytecode once at build time instead of on every container start;
# - copy (not hardlink) from the cache mount, which lives on another filesystem;
# - never let uv download its own interpreter: the venv must point at the
#   base image's Python, which the runtime stage shares at the same path.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Dependencies first, without the project itself: this layer is only rebuilt
# when pyproject.toml or uv.lock change, not on every code change.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the project. --no-editable installs lapor/, services/ and tools/ into the venv's
# site-packages, so the runtime stage needs nothing but the venv (and data/).
# README.md is read by the build backend (pyproject's `readme`).
COPY README.md ./
COPY lapor ./lapor
COPY services ./services
COPY tools ./tools
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# --------------------------------------------------------------------------
# Runtime: the base Python, the venv and the reference data; no uv, no
# compilers, no source tree.
# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# Fixed numeric ids so volume ownership and Kubernetes' runAsNonRoot checks
# do not depend on name resolution inside the image.
RUN groupadd --system --gid 10001 lapor \
    && useradd --system --uid 10001 --gid lapor --no-create-home \
       --home-dir /app --shell /usr/sbin/nologin lapor

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LAPOR_DATA_DIR=/app/data

WORKDIR /app

COPY --from=builder /app/.venv /app/.venv
# Reference data (regions, holidays, ...) read via LAPOR_DATA_DIR; owned by
# root and therefore read-only for the service user.
COPY data ./data

USER 10001:10001

# Documentation only: each service listens on its own <PREFIX>_HTTP_PORT
# (intake 8080, router 8081, sla 8082, notify 8083).
EXPOSE 8080 8081 8082 8083

CMD ["python", "-m", "services.intake"]
