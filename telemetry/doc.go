// Package telemetry sets up tracing and logging for the gateway from the
// standard environment (OTEL_* variables), and names every attribute the
// gateway records, so that spans, metrics and log lines agree on spelling.
package telemetry
