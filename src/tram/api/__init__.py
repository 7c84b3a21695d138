"""Thin HTTP adapters: parse, call a service, turn its result into a response."""
