"""Liaison's deployment: RabbitMQ definitions, PostgreSQL roles, a compose file and Kubernetes
manifests (docs/deployment.md). Python here only generates and checks those files; the running
services never import it."""
