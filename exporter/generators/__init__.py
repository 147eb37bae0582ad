"""Generators: the recording and alerting rules and the Grafana dashboards, each from
one source."""
