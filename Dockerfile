# listingbot container image.
#   make image                      (docker if present, else podman with --format docker)
#   docker run -v listingbot-data:/data -v ./config:/config:ro -e KOTOHOMES_API_KEY=... listingbot
# With podman/buildah build with `--format docker`: the default OCI format has no
# HEALTHCHECK and drops it silently.
#
# The install commands below are the ones tests/test_dockerfile.py runs (offline, in the
# test environment), and `make test` installs the same lock files, so the image cannot
# drift from what is tested.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Build tools (pip, the pinned setuptools) live in their own environment, which stays in
# this stage. The runtime environment gets no pip and no setuptools.
COPY requirements-build.lock ./
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --no-deps -r requirements-build.lock \
 && python -m venv --without-pip /opt/listingbot
# Dependency layer: changes only when the pinned requirements change.
COPY requirements.lock ./
RUN /opt/build/bin/pip --python /opt/listingbot/bin/python install --no-deps -r requirements.lock
# Application layer: a wheel built with the build environment's setuptools (no isolated
# build environment, so nothing is downloaded), installed without resolving again.
COPY pyproject.toml README.md ./
COPY listingbot ./listingbot
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/build/bin/pip --python /opt/listingbot/bin/python install --no-deps /wheels/*.whl

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
# Liveness, through listingbot's own CLI (no curl in the image): `listingbot healthcheck`
# asks /healthz whether the process's loops are alive. Readiness (`--ready`, /readyz) is
# not used here: a source outage or a ChatKitty outage is not fixed by a restart. It reads
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
