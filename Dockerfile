# GPU image for tfflat runs: TensorFlow's CUDA image + tfflat; the entry point is the `tfflat` command.
#   docker build -t tfflat .
#   docker run --gpus all -v $PWD/data:/data -v $PWD/runs:/runs tfflat \
#       train --dataset cifar_cats_cars --model resnet50 --data-dir /data --out /runs/r50
FROM tensorflow/tensorflow:2.20.0-gpu
WORKDIR /opt/tfflat
COPY setup.cfg pyproject.toml README.md ./
COPY tfflat ./tfflat
COPY cli ./cli
COPY configs ./configs
RUN pip install --no-cache-dir . && tfflat --version
ENTRYPOINT ["tfflat"]
CMD ["--help"]
