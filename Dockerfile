# One image for every process of the coordinator: docker-compose.yml picks the process
# with `honcho start <name>`, i.e. the same Procfile commands as `make run`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STATE_DIR=/app/state \
    HOST=0.0.0.0 \
    PORT=8000

WORKDIR /app
RUN useradd --create-home --uid 1000 app

# Dependencies first, so that a code change does not reinstall them: exactly the lock's
# pins, their hashes checked (the coordinator's code runs from /app; the CLI is a package,
# built with the locked setuptools).
COPY requirements/base.txt requirements/
COPY cli/ cli/
RUN pip install --require-hashes --no-deps -r requirements/base.txt \
    && pip install --no-deps --no-build-isolation ./cli

COPY . .
# Static files are served by WhiteNoise from STATE_DIR/staticfiles; the key and the email
# backend are build-only.
RUN SECRET_KEY=collectstatic-only EMAIL_BACKEND=django.core.mail.backends.dummy.EmailBackend \
    DEBUG=false python manage.py collectstatic --noinput \
    && mkdir -p "$STATE_DIR/metrics" && chown -R app:app "$STATE_DIR"

USER app
EXPOSE 8000
CMD ["honcho", "start", "web"]
