"""Liaison's services: one package each."""
