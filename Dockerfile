# The llm-cost-exporter image: the package in a virtualenv on a slim Python base,
# run as a fixed non-root user, ready for a read-only root filesystem.
#
#   podman build --format docker -t llm-cost-exporter .
#   docker build -t llm-cost-exporter .
#
# BASE_IMAGE is any Debian-like image with python3 >= 3.11 and its venv module
# (the official slim image by default; a local Debian bookworm base with
# python3 and python3-venv works too). Behind a TLS-intercepting proxy, pass its
# CA bundle as the `pip-ca` build secret: --secret id=pip-ca,src=/path/to/ca.pem
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/llm-cost-exporter
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
# The dependencies and the build backend get a layer of their own, rebuilt only
# when pyproject.toml changes; the package itself then installs offline.
RUN --mount=type=secret,id=pip-ca \
    set -eu; \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    /opt/llm-cost-exporter/bin/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); print("\n".join(p["project"]["dependencies"] + p["build-system"]["requires"]))' \
        > /tmp/requirements.txt; \
    /opt/llm-cost-exporter/bin/pip install -q -r /tmp/requirements.txt
COPY exporter/ exporter/
COPY collectors/ collectors/
RUN set -eu; \
    /opt/llm-cost-exporter/bin/pip install -q --no-index --no-deps --no-build-isolation .; \
    /opt/llm-cost-exporter/bin/pip uninstall -q -y setuptools wheel pip; \
    /opt/llm-cost-exporter/bin/llm-cost-exporter --version

FROM ${BASE_IMAGE}
# The user the exporter runs as, with no password, home or login shell.
RUN set -eu; \
    echo 'llm-cost-exporter:x:65532:65532::/nonexistent:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'llm-cost-exporter:x:65532:' >> /etc/group; \
    install -d -o 65532 -g 65532 -m 0750 /var/lib/llm-cost-exporter; \
    install -d -m 0755 /etc/llm-cost-exporter
COPY --from=builder /opt/llm-cost-exporter /opt/llm-cost-exporter

# Nothing is written outside the state directory (a volume) and /tmp (a tmpfs or
# emptyDir): the root filesystem can be mounted read-only. The config file goes
# in /etc/llm-cost-exporter (a ConfigMap or a bind mount); point its
# `state_file:` at /var/lib/llm-cost-exporter/state.json so that a restarted
# container resumes its counters.
ENV PATH=/opt/llm-cost-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/llm-cost-exporter"]
# Numeric, so that Kubernetes' runAsNonRoot can verify it without a user database.
USER 65532:65532
EXPOSE 9478
STOPSIGNAL SIGTERM
# Listening elsewhere than :9478 over plain HTTP: set LLMCOST_HEALTHCHECK_URL.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/opt/llm-cost-exporter/bin/python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open(os.environ.get('LLMCOST_HEALTHCHECK_URL') or 'http://127.0.0.1:9478/healthz', timeout=8)"]
ENTRYPOINT ["llm-cost-exporter"]
CMD ["--config", "/etc/llm-cost-exporter/config.yml"]

# VERSION stays pyproject.toml's version (the image tests check); REVISION is the
# commit, e.g. --build-arg REVISION=$(git rev-parse HEAD).
ARG VERSION=0.1.0
ARG REVISION=
LABEL org.opencontainers.image.title="llm-cost-exporter" \
      org.opencontainers.image.description="Prometheus exporter and live cost monitor for self-hosted LLM inference (vLLM)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/llm-cost-exporter/llm-cost-exporter" \
      org.opencontainers.image.url="https://github.com/llm-cost-exporter/llm-cost-exporter" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
