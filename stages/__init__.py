"""The pipeline's stages as plain functions and pydantic configs: what the Prefect flows in
``flows/`` wrap, callable and tested without Prefect (no module here imports it)."""
