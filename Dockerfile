# Retouch in a container: the Gradio app on port 7860, conversations and images in the /data volume.
#   docker build -t retouch .
#   docker run -p 7860:7860 -v retouch:/data -e GEMINI_API_KEY=... -e OPENAI_API_KEY=... retouch
# The official image by default; the image tests build on a local stand-in (tests/docker_base.sh)
# with --build-arg BASE_IMAGE=..., since no registry is reachable where they run.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV RETOUCH_DATA_DIR=/data \
    RETOUCH_HOST=0.0.0.0 \
    GRADIO_ANALYTICS_ENABLED=False \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The app runs as uid 1000, like on Spaces; the code stays root's (read-only to the app), only /data is its own.
RUN useradd --create-home --uid 1000 user \
    && mkdir --mode=0700 /data \
    && chown user:user /data

WORKDIR /app

# Dependencies first: editing the code does not reinstall them.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .

USER user
VOLUME /data
EXPOSE 7860

# python:3.11-slim has no curl; urlopen raises (exit 1) on a refused connection or a 503.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RETOUCH_PORT', '7860'), timeout=4)"]

# SIGTERM drains running model calls for up to RETOUCH_SHUTDOWN_GRACE (30 s): run with --stop-timeout 40.
STOPSIGNAL SIGTERM
CMD ["python", "app.py"]
