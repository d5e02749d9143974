"""OpenTelemetry metrics of the pool, ingestion, embedding servers and search; off unless OTEL_* turns them on.

The instruments come from opentelemetry-api's global meter: until an SDK meter provider is installed they are
no-ops. `configure_from_environment()` (run by the CLI, the MCP server and the Dagster resources) installs the
SDK's provider when the standard OTEL_METRICS_EXPORTER names an exporter (`console`, or `otlp` with the `otel`
extra); the SDK itself reads the rest of the standard variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_METRIC_EXPORT_INTERVAL, OTEL_EXPORTER_OTLP_*).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import metrics

from mahavishnu_assets.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricExporter

logger = logging.getLogger(__name__)

METER_NAME = "mahavishnu_assets"
_meter = metrics.get_meter(METER_NAME)

# -- pool ------------------------------------------------------------------------------------------------
pool_in_use = _meter.create_up_down_counter(
    "mahavishnu.pool.connections.in_use", unit="{connection}", description="Connections handed out now"
)
pool_acquire_duration = _meter.create_histogram(
    "mahavishnu.pool.acquire.duration", unit="s", description="Time to get a connection from the pool"
)
pool_waits = _meter.create_counter(
    "mahavishnu.pool.waits", unit="{acquire}", description="Acquires that found every connection busy"
)
pool_failures = _meter.create_counter(
    "mahavishnu.pool.failures", unit="{failure}", description="Acquires or connections that failed"
)

# -- ingestion -------------------------------------------------------------------------------------------
ingest_files = _meter.create_counter(
    "mahavishnu.ingest.files", unit="{file}", description="Files by outcome: seen, changed, deleted, skipped"
)
ingest_chunks = _meter.create_counter(
    "mahavishnu.ingest.chunks", unit="{chunk}", description="Chunks by outcome: written, deleted"
)
ingest_embeddings = _meter.create_counter(
    "mahavishnu.ingest.embeddings", unit="{embedding}", description="Embeddings by outcome: computed, reused"
)
ingest_stage_duration = _meter.create_histogram(
    "mahavishnu.ingest.stage.duration", unit="s", description="Seconds per ingest stage"
)

# -- embedding servers -----------------------------------------------------------------------------------
embed_requests = _meter.create_counter(
    "mahavishnu.embed.requests", unit="{request}", description="Embedding requests by server and outcome"
)
embed_retries = _meter.create_counter(
    "mahavishnu.embed.retries", unit="{retry}", description="Embedding requests tried again, by server"
)
embed_failures = _meter.create_counter(
    "mahavishnu.embed.failures", unit="{failure}", description="Failed embedding requests by server and kind"
)
embed_request_duration = _meter.create_histogram(
    "mahavishnu.embed.request.duration", unit="s", description="Seconds per embedding request, by server"
)

# -- search ----------------------------------------------------------------------------------------------
search_duration = _meter.create_histogram(
    "mahavishnu.search.duration", unit="s", description="Seconds per search, by mode"
)
search_results = _meter.create_histogram(
    "mahavishnu.search.results", unit="{result}", description="Results returned per search, by mode"
)


def server_label(url: str) -> str:
    """An embedding server as a metric attribute: scheme, host and port only (never credentials or a path)."""
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        host = parts.hostname or "unknown"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "invalid"
    return f"{parts.scheme}://{host}{port}"


def configure_from_environment() -> bool:
    """Install the SDK's meter provider when OTEL_METRICS_EXPORTER asks for an exporter; True when metrics are
    exported. Once per process: a provider already installed (by us or by the host program) is kept."""
    name = os.environ.get("OTEL_METRICS_EXPORTER", "").strip().lower()
    if name in ("", "none"):
        return False
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if isinstance(metrics.get_meter_provider(), MeterProvider):
        return True
    reader = PeriodicExportingMetricReader(_exporter(name))
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    logger.info("OpenTelemetry metrics exported with %s", name)
    return True


def _exporter(name: str) -> MetricExporter:
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        except ImportError:
            raise ConfigurationError(
                "OTEL_METRICS_EXPORTER=otlp needs the OTLP exporter package",
                suggestion="pip install 'mahavishnu-assets[otel]', or unset OTEL_METRICS_EXPORTER.",
            ) from None
        return OTLPMetricExporter()
    raise ConfigurationError(
        f"OTEL_METRICS_EXPORTER={name!r} is not an exporter this program knows",
        suggestion="Use 'otlp', 'console' or 'none'.",
    )
