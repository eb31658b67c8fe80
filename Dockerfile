# syntax=docker/dockerfile:1
# listingbot container image.
#   docker build -t listingbot .
#   docker run -v listingbot-data:/data -v ./config:/config:ro -e KOTOHOMES_API_KEY=... listingbot
#
# The install commands below are the ones tests/test_dockerfile.py runs in a fresh virtual
# environment (and `make test` installs the same requirements.lock), so the image cannot
# drift from what is tested.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/listingbot
WORKDIR /src
# Dependency layer: changes only when the pinned requirements change.
COPY requirements.lock ./
RUN /opt/listingbot/bin/pip install -r requirements.lock
# Application layer.
COPY pyproject.toml README.md ./
COPY listingbot ./listingbot
RUN /opt/listingbot/bin/pip install --no-deps .

FROM python:3.11-slim
RUN groupadd --system listingbot \
 && useradd --system --gid listingbot --home-dir /data --shell /usr/sbin/nologin listingbot \
 && mkdir -p /data /config \
 && chown listingbot:listingbot /data
COPY --from=build /opt/listingbot /opt/listingbot
ENV PATH=/opt/listingbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LISTINGBOT_CONFIG=/config/listingbot.yaml
USER listingbot
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9108
# The readiness check goes through listingbot's own CLI: no curl in the image. It reads
# only ops.listen when the rest of the config no longer validates, so a rejected reload
# does not mark a healthy container unhealthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["listingbot", "healthcheck"]
# Exec form: listingbot itself is PID 1 and receives SIGTERM (no shell in between). It
# drains in-flight sends for delivery.grace_period_s (default 10 s) before exiting, so give
# `docker stop` more than that: `docker run --stop-timeout 30` / compose stop_grace_period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["listingbot"]
CMD ["run"]
