"""A span receiver for the gateway tests: what the gateway and Triton export over OTLP/HTTP.

Spans come back as dicts: service, name, trace/span/parent ids, attributes, and events
as (name, attributes) pairs.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


class OtlpReceiver:
    """A minimal OTLP/HTTP trace receiver: protobuf (the Python SDK) or JSON (Triton 2.51's
    opentelemetry-cpp exporter sends application/json, ids in hex)."""

    def __init__(self):
        self.spans: list[dict] = []
        self.errors: list[str] = []  # bodies it could not read, shown when a test fails
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    receiver._add(body, self.headers.get("Content-Type", ""))
                except Exception as error:  # noqa: BLE001 - recorded for the failure message
                    receiver.errors.append(f"{type(error).__name__}: {error} ({len(body)} bytes, "
                                           f"{self.headers.get('Content-Type')})")
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _add(self, body: bytes, content_type: str) -> None:
        if content_type.startswith("application/json"):
            spans = _spans_of_json(json.loads(body))
        else:
            spans = _spans_of_protobuf(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
        with self._lock:
            self.spans += spans

    def of(self, service: str) -> list[dict]:
        with self._lock:
            return [s for s in self.spans if s["service"] == service]

    def trace(self, trace_id: str) -> list[dict]:
        with self._lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _spans_of_protobuf(request) -> list[dict]:
    spans = []
    for resource_spans in request.resource_spans:
        service = next((a.value.string_value for a in resource_spans.resource.attributes
                        if a.key == "service.name"), "?")
        for scope in resource_spans.scope_spans:
            spans += [{"service": service, "name": span.name, "trace_id": span.trace_id.hex(),
                       "span_id": span.span_id.hex(), "parent_id": span.parent_span_id.hex(),
                       "attributes": {a.key: _value(a.value) for a in span.attributes},
                       "events": [(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in span.events]}
                      for span in scope.spans]
    return spans


def _json_value(value: dict):
    if "arrayValue" in value:
        return [_json_value(v) for v in value["arrayValue"].get("values", [])]
    return next(iter(value.values()), None)


def _spans_of_json(request: dict) -> list[dict]:
    spans = []
    for resource_spans in request.get("resourceSpans", []):
        resource = {a["key"]: _json_value(a["value"]) for a in resource_spans["resource"].get("attributes", [])}
        for scope in resource_spans.get("scopeSpans", []):
            spans += [{"service": resource.get("service.name", "?"), "name": span["name"],
                       "trace_id": span["traceId"].lower(), "span_id": span["spanId"].lower(),
                       "parent_id": span.get("parentSpanId", "").lower(),
                       "attributes": {a["key"]: _json_value(a["value"]) for a in span.get("attributes", [])},
                       "events": [(e["name"], {a["key"]: _json_value(a["value"]) for a in e.get("attributes", [])})
                                  for e in span.get("events", [])]}
                      for span in scope.get("spans", [])]
    return spans


def events_named(span: dict, name: str) -> list[dict]:
    """The attributes of each of the span's events called `name`, in order."""
    return [attributes for event, attributes in span["events"] if event == name]
