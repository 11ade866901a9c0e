"""aiorch for Prometheus: the metrics exporter (``aiorch metrics serve``) and its figures."""
