# The steamprice worker image: `docker build -t steamprice .`, or `docker compose up -d`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/var/lib/steamprice \
    WEB_HOST=0.0.0.0 \
    WEB_PORT=6066

RUN useradd --system --create-home --home-dir /home/steamprice --uid 10001 steamprice \
    && mkdir -p /var/lib/steamprice \
    && chown steamprice:steamprice /var/lib/steamprice

WORKDIR /app

# Dependencies first, so that a code change does not reinstall them (rocksdict ships wheels).
# README.md is optional for the build; the bracket glob lets COPY succeed without it.
COPY pyproject.toml README.m[d] ./
COPY steamprice ./steamprice
COPY sql ./sql
# A plain install: sql/ ships inside the package (steamprice.sql), so the worker migrates from
# site-packages whatever its working directory.
RUN pip install . \
    && cd / && python -c "import steamprice.database as d; assert d.migrations(), d.SQL_DIR"

USER steamprice

# RocksDB table state: keep it across container restarts so that recovery is quick.
VOLUME ["/var/lib/steamprice"]
EXPOSE 6066

# /health answers 200 only while the worker is consuming (503 while starting or rebalancing).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('WEB_PORT', '6066'), timeout=4)"]

ENTRYPOINT ["steamprice"]
CMD ["worker", "-l", "info"]
