# One image for the webserver, the daemon and the user-code server.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 DAGSTER_HOME=/opt/dagster/home
RUN apt-get update && apt-get install -y --no-install-recommends git curl && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/mahavishnu
COPY pyproject.toml README.md ./
COPY mahavishnu_assets ./mahavishnu_assets
COPY migrations ./migrations
COPY settings/mahavishnu.yaml ./settings/mahavishnu.yaml
RUN pip install -e '.[deploy]' && mkdir -p $DAGSTER_HOME
COPY docker/dagster.yaml workspace.yaml $DAGSTER_HOME/
RUN useradd --create-home --uid 1000 mahavishnu && chown -R mahavishnu $DAGSTER_HOME
USER mahavishnu
