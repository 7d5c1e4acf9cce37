# Serves one seqrec model over HTTP, baked in at build time: the image needs no tracking server at run time
# and does not change when an alias moves. Export the model first, then build:
#
#   python -m seqrec.serving.export --model-uri models:/seqrec@champion --out build/model
#   docker build --build-arg MODEL_DIR=build/model -t seqrec-serve .
#   docker run -p 8000:8000 seqrec-serve
#
# Everything installed is pinned: the exported model's requirements.txt (what inference imports) and
# serve-requirements.txt (the HTTP service) name the packages, and uv.lock (its export, made in the first stage)
# pins every package they pull in, so the image's packages are the checkout's. Export a model trained in an
# environment made from this lock (`make`): a pin of the model's that the lock does not hold stops the build.
# torch is the CPU build of the model's pinned version, from PyTorch's CPU index (PyPI's Linux torch is the
# multi-GB CUDA build). The code served is the seqrec package the model carries (its MLflow code path), so the
# image holds no training code or packages.
FROM python:3.11-slim AS lock
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
COPY pyproject.toml uv.lock /src/
RUN uv export --directory /src --locked --quiet --no-emit-project --extra serve --no-hashes --no-header \
        --output-file /lock-constraints.txt

FROM python:3.11-slim
ARG MODEL_DIR=build/model
RUN useradd --create-home --uid 10001 seqrec
COPY --chown=seqrec:seqrec ${MODEL_DIR} /opt/model
COPY --from=lock /lock-constraints.txt /tmp/lock-constraints.txt
RUN torch_pin="$(grep -E '^torch==' /opt/model/requirements.txt)" && \
    pip install --no-cache-dir --no-deps --index-url https://download.pytorch.org/whl/cpu "$torch_pin" && \
    pip install --no-cache-dir -c /tmp/lock-constraints.txt \
        -r /opt/model/requirements.txt -r /opt/model/serve-requirements.txt && \
    rm /tmp/lock-constraints.txt

USER seqrec
WORKDIR /home/seqrec
ENV PYTHONPATH=/opt/model/code MODEL_URI=/opt/model SEQREC_SERVE_THREADS=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["python", "-m", "seqrec.serving.api", "--host", "0.0.0.0", "--port", "8000"]
