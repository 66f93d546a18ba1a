"""Celeriac: a Kubernetes-native, Celery-compatible task queue runtime."""

__version__ = "0.1.0"
