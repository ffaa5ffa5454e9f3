"""Benchmarks: `python -m bench [resolve|bulk]`. Each prints its figures beside the raw speed of
PostgreSQL / RabbitMQ / a bare Flask endpoint measured on the same machine in the same run, and
writes them to bench/results/ as JSON and markdown. See bench/README.md."""
