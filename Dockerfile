# CPU image of the asrguard detector service.
#   docker build -t asrguard .
#   docker run --rm -p 8000:8000 -v "$PWD/api-keys:/keys/api-keys:ro" asrguard --api-key-file /keys/api-keys
# See docs/service.md for every option.
FROM python:3.11-slim

# the CPU wheel of torch: a bare `torch` requirement would pull several GB of CUDA packages
RUN pip install --no-cache-dir "torch>=2.2" --index-url https://download.pytorch.org/whl/cpu

WORKDIR /opt/asrguard
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 asrguard

# fewer malloc arenas: memory taken in a burst of requests goes back to the system afterwards
ENV MALLOC_ARENA_MAX=2 PYTHONUNBUFFERED=1
USER asrguard
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
# SIGTERM (docker stop) lets requests in flight finish: give `docker stop -t 40` for the 30 s grace period
STOPSIGNAL SIGTERM
# bound beyond loopback inside the container, so API keys and a 60/min rate limit are on by default
ENTRYPOINT ["asrguard", "serve", "--host", "0.0.0.0", "--port", "8000"]
