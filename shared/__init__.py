"""Plumbing every Liaison service uses the same way. No business rules live here."""
