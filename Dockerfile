# Serves a seqrec model over HTTP. The model is loaded at start from MODEL_URI, resolved against
# MLFLOW_TRACKING_URI (a tracking server, or a mounted mlflow.db with its artifacts).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY seqrec ./seqrec
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu "torch>=2.4,<2.14" && \
    pip install --no-cache-dir .
ENV MODEL_URI=models:/seqrec@champion
EXPOSE 8000
CMD ["sh", "-c", "seqrec-serve --model-uri \"$MODEL_URI\" --host 0.0.0.0 --port 8000"]
