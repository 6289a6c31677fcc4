"""The example model server: a linear two-feature classifier behind a small JSON API."""
