# The gateway (hermes serve): pyproject's core dependencies only, no torch; ffmpeg is the static
# binary inside the imageio-ffmpeg wheel. Triton runs from deploy/triton/Dockerfile.
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# A virtual environment without pip of its own: the build stage's pip installs into it, and
# only the environment is copied into the final image.
RUN python -m venv --without-pip /opt/hermes
COPY deploy/gateway-constraints.txt pyproject.toml README.md ./
COPY gateway/ gateway/
RUN pip --python /opt/hermes/bin/python install --constraint gateway-constraints.txt . \
    && pip --python /opt/hermes/bin/python check

FROM python:3.11.13-slim-bookworm
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin hermes
COPY --from=build /opt/hermes /opt/hermes
# A container listens on every interface; HERMES_TRITON_URL says where Triton's gRPC port is.
ENV PATH=/opt/hermes/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HERMES_HOST=0.0.0.0
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["hermes", "serve"]
