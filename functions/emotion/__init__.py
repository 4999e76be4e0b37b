"""Facial-emotion recognition service: core engine, HTTP API, jobs and storage adapters."""

__version__ = "0.1.0"
