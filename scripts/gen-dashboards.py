#!/usr/bin/env python3
"""Writes grafana/dashboards/*.json: Pulse's four Grafana dashboards.

The dashboards are generated so that every panel gets the same datasource, a unit and the
host/GPU variables the same way. Edit this file, run it, commit both:

    python3 scripts/gen-dashboards.py

tests/dashboards.rs runs every panel's query through a real Prometheus scraping Pulse.
"""
import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
GPU = 'Hostname=~"$host", gpu=~"$gpu"'
SVC = 'service=~"$service"'


def datasource_var():
    return {"name": "datasource", "label": "Data source", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0}


def query_var(name, label, query, multi=True):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": name}, "definition": query,
            "refresh": 2, "includeAll": multi, "multi": multi, "allValue": ".*",
            "current": {}, "sort": 3, "hide": 0}


HOST = query_var("host", "Host", "label_values(DCGM_FI_DEV_GPU_UTIL, Hostname)")
GPUV = query_var("gpu", "GPU", 'label_values(DCGM_FI_DEV_GPU_UTIL{Hostname=~"$host"}, gpu)')
SERVICE = query_var("service", "Service",
                    'label_values(http_requests_total{service!="pulse"}, service)')


class Board:
    def __init__(self, uid, title, description, variables):
        self.uid, self.title, self.description = uid, title, description
        self.variables = [datasource_var()] + variables
        self.panels, self.x, self.y, self.row_h = [], 0, 0, 0

    def panel(self, kind, title, unit, targets, w=12, h=8, description="", **extra):
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        p = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"x": self.x, "y": self.y, "w": w, "h": h},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": DS, "expr": e, "legendFormat": l,
                 **({"instant": True, "format": "table"} if kind == "table" else {})}
                for i, (e, l) in enumerate(targets)
            ],
        }
        p.update(extra)
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)

    def json(self):
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["pulse"], "timezone": "browser", "schemaVersion": 39, "version": 1,
            "editable": True, "refresh": "5s", "time": {"from": "now-30m", "to": "now"},
            "templating": {"list": self.variables}, "annotations": {"list": []},
            "panels": self.panels,
        }


def gpu_fleet():
    b = Board("pulse-gpu-fleet", "Pulse / GPU fleet",
              "Per-GPU state from Pulse's samplers (dcgm-exporter metric names).", [HOST, GPUV])
    per_gpu = "{{Hostname}} GPU {{gpu}}"
    b.panel("stat", "GPUs reporting", "none",
            [(f"count(DCGM_FI_DEV_GPU_UTIL{{{GPU}}})", "GPUs")], w=6, h=4)
    b.panel("stat", "Mean utilisation", "percent",
            [(f"avg(DCGM_FI_DEV_GPU_UTIL{{{GPU}}})", "mean")], w=6, h=4)
    b.panel("stat", "Memory used, fleet", "percentunit",
            [(f"sum(DCGM_FI_DEV_FB_USED{{{GPU}}}) / sum(DCGM_FI_DEV_FB_TOTAL{{{GPU}}})", "used")],
            w=6, h=4)
    b.panel("stat", "Hottest GPU", "celsius",
            [(f"max(DCGM_FI_DEV_GPU_TEMP{{{GPU}}})", "max")], w=6, h=4)
    b.panel("timeseries", "GPU utilisation", "percent",
            [(f"DCGM_FI_DEV_GPU_UTIL{{{GPU}}}", per_gpu)])
    b.panel("timeseries", "Memory copy utilisation", "percent",
            [(f"DCGM_FI_DEV_MEM_COPY_UTIL{{{GPU}}}", per_gpu)])
    b.panel("timeseries", "Framebuffer memory used", "decmbytes",
            [(f"DCGM_FI_DEV_FB_USED{{{GPU}}}", per_gpu),
             (f"DCGM_FI_DEV_FB_TOTAL{{{GPU}}}", "{{Hostname}} GPU {{gpu}} total")])
    b.panel("timeseries", "Temperature", "celsius",
            [(f"DCGM_FI_DEV_GPU_TEMP{{{GPU}}}", per_gpu)])
    b.panel("timeseries", "Power draw and limit", "watt",
            [(f"DCGM_FI_DEV_POWER_USAGE{{{GPU}}}", per_gpu),
             (f"DCGM_FI_DEV_ENFORCED_POWER_LIMIT{{{GPU}}}", "{{Hostname}} GPU {{gpu}} limit")])
    b.panel("timeseries", "Clocks", "rotmhz",
            [(f"DCGM_FI_DEV_SM_CLOCK{{{GPU}}}", "SM " + per_gpu),
             (f"DCGM_FI_DEV_MEM_CLOCK{{{GPU}}}", "memory " + per_gpu)])
    b.panel("timeseries", "PCIe throughput", "KBs",
            [(f"DCGM_FI_DEV_PCIE_TX_THROUGHPUT{{{GPU}}}", "TX " + per_gpu),
             (f"DCGM_FI_DEV_PCIE_RX_THROUGHPUT{{{GPU}}}", "RX " + per_gpu)])
    b.panel("timeseries", "Clock throttle reasons (bitmask)", "none",
            [(f"DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{{{GPU}}}", per_gpu)],
            description="NVML throttle-reason bits; 0 means not throttled.")
    b.panel("timeseries", "XID errors (last critical XID, 0 when none)", "none",
            [(f"max by (Hostname, gpu) (max_over_time(DCGM_FI_DEV_XID_ERRORS{{{GPU}}}[$__rate_interval]))",
              per_gpu)])
    b.panel("timeseries", "ECC errors per second", "short",
            [(f"rate(DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{{{GPU}}}[$__rate_interval])", "single-bit " + per_gpu),
             (f"rate(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{{{GPU}}}[$__rate_interval])", "double-bit " + per_gpu)])
    b.panel("table", "GPU memory per process", "decmbytes",
            [(f"pulse_gpu_process_fb_used_mib{{{GPU}}}", "")], w=24)
    return b


def requests():
    b = Board("pulse-requests", "Pulse / Requests and SLO",
              "Request metrics reported to Pulse by the inference services it watches.", [SERVICE])
    by_route = "{{service}} {{route}}"
    b.panel("stat", "Requests per second", "reqps",
            [(f"sum(rate(http_requests_total{{{SVC}}}[$__rate_interval]))", "req/s")], w=8, h=4)
    b.panel("stat", "Error ratio (5xx)", "percentunit",
            [(f'sum(rate(http_requests_total{{{SVC}, status=~"5.."}}[$__rate_interval])) '
              f'/ sum(rate(http_requests_total{{{SVC}}}[$__rate_interval])) or vector(0)', "errors")],
            w=8, h=4)
    b.panel("stat", "p99 latency", "s",
            [(f"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{SVC}}}[$__rate_interval])))",
              "p99")], w=8, h=4)
    b.panel("timeseries", "Request rate by route", "reqps",
            [(f"sum by (service, route) (rate(http_requests_total{{{SVC}}}[$__rate_interval]))", by_route)])
    b.panel("timeseries", "Requests by status", "reqps",
            [(f"sum by (status) (rate(http_requests_total{{{SVC}}}[$__rate_interval]))", "{{status}}")])
    b.panel("timeseries", "Latency percentiles", "s",
            [(f"histogram_quantile({q}, sum by (le) (rate(http_request_duration_seconds_bucket{{{SVC}}}[$__rate_interval])))",
              f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)])
    b.panel("timeseries", "p95 latency by route (recording rule, 5 min)", "s",
            [(f"service_route:http_request_duration_seconds:p95_5m{{{SVC}}}", by_route)])
    b.panel("timeseries", "Error ratio by route", "percentunit",
            [(f'sum by (service, route) (rate(http_requests_total{{{SVC}, status=~"5.."}}[$__rate_interval])) '
              f'/ sum by (service, route) (rate(http_requests_total{{{SVC}}}[$__rate_interval]))', by_route)],
            w=24)
    return b


def alerts():
    b = Board("pulse-alerts", "Pulse / Alerts, anomalies and forecasts",
              "Pulse's alert rules, anomaly scores and forecasts with their interval bands.", [HOST, GPUV])
    per_series = "{{Hostname}} GPU {{gpu}} {{metric}}"
    b.panel("stat", "Firing alerts", "none",
            [('count(ALERTS{alertstate="firing"}) or vector(0)', "firing")], w=8, h=4)
    b.panel("stat", "Pending alerts", "none",
            [('count(ALERTS{alertstate="pending"}) or vector(0)', "pending")], w=8, h=4)
    b.panel("stat", "Highest anomaly score", "percentunit",
            [(f"max(pulse_anomaly_score{{{GPU}}})", "max")], w=8, h=4)
    b.panel("table", "Firing alerts", "none",
            [('ALERTS{alertstate="firing"}', "")], w=24)
    b.panel("timeseries", "Anomaly scores (0-1)", "percentunit",
            [(f"pulse_anomaly_score{{{GPU}}}", per_series)])
    b.panel("timeseries", "Time to GPU memory exhaustion, every GPU of the host", "s",
            [(f'pulse_exhaustion_seconds{{Hostname=~"$host", bound="{bound}"}}',
              f"{bound} {per_series}") for bound in ("estimate", "earliest")],
            description="Only GPUs on course to run out appear; the rest of the time the panel is empty.")
    def forecast(title, metric, unit, bounds, **extra):
        """A series against its forecast `$horizon` ahead, with the given bounds as bands."""
        band = f'pulse_forecast{{{GPU}, metric="{metric}", horizon="$horizon", bound="%s"}}'
        b.panel("timeseries", title, unit,
                [(f"{metric}{{{GPU}}}", "actual {{Hostname}} GPU {{gpu}}")]
                + [(band % bound, f"{bound} {{{{Hostname}}}} GPU {{{{gpu}}}}") for bound in bounds],
                w=24, h=10, **extra)

    forecast("GPU memory: actual and forecast with 80 % / 95 % bands", "DCGM_FI_DEV_FB_USED",
             "decmbytes", ("point", "lower_80", "upper_80", "lower_95", "upper_95"),
             description="The forecast is written at each refit for $horizon ahead; "
                         "compare it with the actual value $horizon later.")
    forecast("GPU utilisation: actual and forecast with 80 % band", "DCGM_FI_DEV_GPU_UTIL",
             "percent", ("point", "lower_80", "upper_80"))
    b.variables.append(query_var("horizon", "Forecast horizon",
                                 "label_values(pulse_forecast, horizon)", multi=False))
    return b


def health():
    b = Board("pulse-health", "Pulse / Health",
              "Pulse's own pipeline: throughput, drops, mailboxes, component states, tracing.", [])
    by_c = "{{component}}"
    b.panel("stat", "Samples per second", "short",
            [("rate(pulse_samples_ingested_total[$__rate_interval])", "samples/s")], w=8, h=4)
    b.panel("stat", "Dropped per second", "short",
            [("rate(pulse_samples_dropped_total[$__rate_interval])", "dropped/s")], w=8, h=4)
    b.panel("stat", "Components not operational", "none",
            [('count(pulse_component_state{state!="operational"} == 1) or vector(0)', "not operational")],
            w=8, h=4)
    b.panel("timeseries", "Items received per second, by component", "short",
            [("rate(pulse_component_received_total[$__rate_interval])", by_c)])
    b.panel("timeseries", "Items dropped per second, by component", "short",
            [("rate(pulse_component_dropped_total[$__rate_interval])", by_c)])
    b.panel("timeseries", "Mailbox backlog", "none",
            [("pulse_mailbox_backlog", by_c)])
    b.panel("table", "Component states", "none",
            [("pulse_component_state == 1", "")])
    b.panel("timeseries", "Window store: series and points", "short",
            [('pulse_series{component="window_store"}', "series"),
             ('pulse_points{component="window_store"}', "points")])
    b.panel("timeseries", "Late sampler ticks per second", "short",
            [("rate(pulse_ticks_late_total[$__rate_interval])", by_c)])
    b.panel("timeseries", "Trace store", "bytes",
            [('pulse_trace_store_bytes{component="tracing"}', "bytes held")])
    b.panel("timeseries", "Traces sampled and refused per second", "short",
            [('rate(pulse_traces_sampled_total{component="tracing"}[$__rate_interval])', "sampled"),
             ('rate(pulse_traces_unsampled_rate_limit_total{component="tracing"}[$__rate_interval])',
              "over the per-second limit")])
    return b


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grafana", "dashboards")
    for board in (gpu_fleet(), requests(), alerts(), health()):
        path = os.path.join(root, board.uid.replace("pulse-", "") + ".json")
        with open(path, "w") as f:
            json.dump(board.json(), f, indent=2)
            f.write("\n")
        print(f"wrote {os.path.relpath(path)}: {len(board.panels)} panels")


if __name__ == "__main__":
    main()
