# syntax=docker/dockerfile:1
# The fenced API (default command) and, with `fenced projector`, the projector.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
RUN pip install ./sdk . \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin fenced

USER fenced
EXPOSE 8000

# Exec form: uvicorn is PID 1 and gets SIGTERM directly for a graceful shutdown.
CMD ["uvicorn", "service.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
