"""Receive: view -> parse -> store (dedupe) -> dispatch to targets."""
