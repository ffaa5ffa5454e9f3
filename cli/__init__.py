"""The `liaison` command: Liaison's REST APIs for operators and scripts."""
