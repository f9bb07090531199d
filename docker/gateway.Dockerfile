# syntax=docker/dockerfile:1
# The facefuse gateway: slim, non-root, the facefuse package and its client only (no
# Triton binary, no model libraries).
#
#   docker build -f docker/gateway.Dockerfile -t facefuse-gateway:0.1.0 .
#
# Not built in CI: no container engine there (README "Deploy").

FROM python:3.12.8-slim-bookworm AS wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY client/ client/
COPY src/ src/
COPY build/facefuse_build/ build/facefuse_build/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ./client .

FROM python:3.12.8-slim-bookworm
# The gateway's own requirements (tests/unit/test_images.py checks the list covers
# everything `facefuse gateway run` imports), then facefuse without the server
# dependencies (nvidia-pytriton, onnxruntime) it declares for the embedded default.
COPY docker/gateway-requirements.txt /tmp/
COPY --from=wheels /wheels /tmp/wheels
RUN pip install --no-cache-dir -r /tmp/gateway-requirements.txt \
 && pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels /tmp/gateway-requirements.txt \
 && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin facefuse
USER 10001
ENV PYTHONUNBUFFERED=1 \
    FACEFUSE_VAR_DIR=/tmp/facefuse \
    FACEFUSE_GATEWAY_HOST=0.0.0.0 \
    FACEFUSE_GATEWAY_TEMPLATE_DIR=/var/lib/facefuse/templates
EXPOSE 50051 9464
ENTRYPOINT ["facefuse"]
CMD ["gateway", "run"]
