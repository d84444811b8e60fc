"""Helpers for the end-to-end tests: processes, fake servers, keys and
tokens, the gatehouse and Envoy launchers, and a non-normalizing HTTP client.
Everything listens on 127.0.0.1 with ephemeral ports."""
