# Serves one seqrec model over HTTP, baked in at build time: the image needs no tracking server at run time
# and does not change when an alias moves. Export the model first, then build:
#
#   python -m seqrec.serving.export --model-uri models:/seqrec@champion --out build/model
#   docker build --build-arg MODEL_DIR=build/model -t seqrec-serve .
#   docker run -p 8000:8000 seqrec-serve
#
# Everything installed is pinned by the exported model: its requirements.txt (what inference imports) and
# serve-requirements.txt (the HTTP service); torch comes from PyTorch's CPU index. The code served is the
# seqrec package the model carries (its MLflow code path), so the image holds no training code or packages.
FROM python:3.11-slim

ARG MODEL_DIR=build/model
RUN useradd --create-home --uid 10001 seqrec
COPY --chown=seqrec:seqrec ${MODEL_DIR} /opt/model
RUN torch_pin="$(grep -E '^torch==' /opt/model/requirements.txt)" && \
    pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "$torch_pin" && \
    pip install --no-cache-dir -r /opt/model/requirements.txt -r /opt/model/serve-requirements.txt

USER seqrec
WORKDIR /home/seqrec
ENV PYTHONPATH=/opt/model/code MODEL_URI=/opt/model SEQREC_SERVE_THREADS=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["python", "-m", "seqrec.serving.api", "--host", "0.0.0.0", "--port", "8000"]
