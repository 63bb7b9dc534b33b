# One image, three commands:
#   web (default):    docker run IMAGE                      → gunicorn on $HIS_PORT
#   migration job:    docker run IMAGE his db upgrade       → run once before a new version
#   MLLP listener:    docker run IMAGE his hl7 listen       → (arrives with the HL7 v2 issue)
# Configuration only through HIS_* variables; HIS_SECRET_KEY and HIS_DATABASE_URL are required.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first, from the lock, so a code change does not reinstall them.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p his billing && touch his/__init__.py billing/__init__.py \
 && pip install -c constraints.txt . \
 && pip uninstall -y his
COPY his ./his
COPY billing ./billing
COPY migrations ./migrations
COPY fhir ./fhir
COPY wsgi.py gunicorn.conf.py babel.cfg ./
RUN pip install --no-deps -c constraints.txt -e . \
 && pybabel compile -d his/translations \
 && python -m compileall -q his billing migrations

FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    HIS_HOST=0.0.0.0 HIS_PORT=8000 HIS_MLLP_PORT=2575 HIS_INSTANCE_DIR=/var/lib/his
# pg_dump and pg_restore for `his backup` / `his restore` (Debian 12's: PostgreSQL 15; a
# newer server needs the PGDG client of its own major version).
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 his \
 && useradd --system --uid 10001 --gid his --home-dir /app --shell /usr/sbin/nologin his \
 && mkdir -p /var/lib/his && chown his:his /var/lib/his
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=root:root /app /app
WORKDIR /app
USER 10001:10001
EXPOSE 8000 2575
VOLUME ["/var/lib/his"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"HIS_PORT\", \"8000\")}/healthz', timeout=4)" || exit 1
ENTRYPOINT []
CMD ["his", "serve"]
