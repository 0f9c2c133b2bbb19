"""The system description and its analytical cost model (no accuracy, no aihwkit)."""
