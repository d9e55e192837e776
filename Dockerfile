# GPU image for tfflat runs: the official Python image, TensorFlow with its CUDA libraries from pip
# (tensorflow[and-cuda]), then tfflat; the entry point is the `tfflat` command. The host needs the NVIDIA
# driver and the NVIDIA Container Toolkit only. Versions are stated here and checked against setup.cfg by
# tests/test_dockerfile.py (no Docker daemon needed):
#   docker build -t tfflat .                       # or: --build-arg TENSORFLOW_VERSION=2.21.0
#   docker run --gpus all -v $PWD/data:/data -v $PWD/runs:/runs tfflat \
#       train --dataset cifar_cats_cars --model resnet50 --data-dir /data --out /runs/r50 --devices auto
#   docker run --gpus all -v $PWD/data:/data -v $PWD/results:/opt/tfflat/results tfflat \
#       sweep configs/fig3_cifar_resnet50_sgd.toml --data-dir /data --workers 8     # one worker per GPU
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

ARG TENSORFLOW_VERSION=2.20.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TF_FORCE_GPU_ALLOW_GROWTH=true

WORKDIR /opt/tfflat
# TensorFlow first: its layer (~3 GB with CUDA) is reused when only tfflat changes
RUN pip install "tensorflow[and-cuda]==${TENSORFLOW_VERSION}"
COPY setup.cfg pyproject.toml README.md ./
COPY tfflat ./tfflat
COPY cli ./cli
COPY configs ./configs
RUN pip install . && tfflat --version
ENTRYPOINT ["tfflat"]
CMD ["--help"]
